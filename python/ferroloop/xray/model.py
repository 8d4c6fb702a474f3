"""What the x-ray talks about: a loop entry, a task's record, an executor job, a blocking
event, a finding, a task's row in a report. Data only, and a leaf: nothing here imports the
rest of the x-ray, so the recorder, the analysis, the exports and the live monitor can all
import it (and none of them needs another just for a type)."""

from dataclasses import dataclass, field

# Origins of a loop entry, as src/trace.rs numbers them.
SOON, TIMER, FD, THREAD, STREAM, DATAGRAM = 1, 2, 3, 4, 5, 6
ORIGIN_NAMES = {SOON: "callback", TIMER: "timer", FD: "IO", THREAD: "thread", STREAM: "IO", DATAGRAM: "IO"}


@dataclass
class Entry:
    """One callback, task step or IO readiness the loop ran (recorder)."""

    seq: int
    origin: int
    cause: int
    t0: float
    t1: float
    cpu: float
    task: object = None  # the Task whose step this was
    label: str = ""
    internal: bool = False  # the recorder's own callbacks

    @property
    def duration(self):
        return self.t1 - self.t0


@dataclass
class TaskInfo:
    """A task as the recorder saw it, from creation to end."""

    task: object
    name: str
    coro: str
    created_at: float
    created_where: object  # traceback.FrameSummary or None
    steps: list = field(default_factory=list)  # Entry
    done_at: float = None
    outcome: str = "pending"  # result / exception / cancelled / pending
    exception: str = None
    pending_at_main_exit: bool = False
    cancelled_at_shutdown: bool = False
    internal: bool = False  # asyncio's/ferroloop's own (shutdown_asyncgens, ...)


@dataclass
class Job:
    """An executor job, timed in the worker."""

    kind: str  # thread / process / other
    lane: str
    name: str
    t0: float
    t1: float


@dataclass
class BlockingEvent:
    """An entry that held the loop past the threshold, seen live by the watchdog (t1 is
    None while it still holds the loop)."""

    seq: int
    t0: float
    t1: float = None
    cpu: float = 0.0
    task: str = ""  # the task's readable name, or the callback's
    where: str = "?"  # file.py:LINE of the program's innermost frame while it blocked
    call: str = "?"  # the call on that line, e.g. "time.sleep"
    stack: list = field(default_factory=list)  # [(filename, lineno, function, line)], innermost last
    sampled: bool = False

    @property
    def kind(self):
        if self.t1 is None:
            return "blocking"
        return "blocking" if self.cpu < 0.5 * (self.t1 - self.t0) else "cpu-bound"

    def as_dict(self, now=None):
        held = (self.t1 if self.t1 is not None else now or self.t0) - self.t0
        return {
            "seq": self.seq,
            "kind": self.kind,
            "ongoing": self.t1 is None,
            "t0": self.t0,
            "held": held,
            "cpu": self.cpu,
            "task": self.task,
            "where": self.where,
            "call": self.call,
            "stack": [list(f) for f in self.stack],
            "sampled": self.sampled,
        }


@dataclass
class Finding:
    kind: str  # blocking / cpu-bound / abandoned / never-awaited / orphaned / unhandled-exception
    task: str  # the task's name ("" when none)
    where: str  # file.py:LINE
    call: str  # the offending call or coroutine, e.g. "time.sleep"
    detail: str
    fix: str
    stack: list = field(default_factory=list)  # FrameSummary, innermost last
    count: int = 1  # findings grouped into this one (same kind, place and call)
    others: list = field(default_factory=list)  # the grouped findings' task names
    weight: float = 0.0  # how bad: the worst of a group is the one shown

    def __str__(self):
        who = f"{self.task}: " if self.task else ""
        head = f"[{self.kind}] {who}{self.call} at {self.where} — {self.detail}"
        if self.count > 1:
            shown = ", ".join(self.others[:3]) + (", ..." if len(self.others) > 3 else "")
            head += f"\n    (and {self.count - 1} more the same: {shown})"
        return f"{head}\n    fix: {self.fix}"


@dataclass
class TaskStats:
    """A task's row in a report."""

    name: str
    coro: str
    created: str
    steps: int
    running: float
    cpu: float
    waiting: float
    waits: dict  # kind -> seconds
    longest_step: float
    outcome: str
    kind: str  # IO-bound / CPU-bound / blocking
