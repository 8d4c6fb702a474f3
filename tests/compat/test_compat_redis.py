"""redis-py's redis.asyncio against a real Redis (started by the `redis_server` fixture on
loopback): get/set, expiry, a pipeline, a transaction, pub/sub."""

import asyncio

import redis.asyncio as aioredis


def test_get_set_pipeline(arun, redis_server):
    prefix = f"compat:{arun.name}:"

    async def main():
        r = aioredis.Redis(host=redis_server.host, port=redis_server.port, db=0)
        try:
            assert await r.ping() is True
            assert await r.set(prefix + "a", "1") is True
            assert await r.get(prefix + "a") == b"1"
            assert await r.incrby(prefix + "a", 41) == 42
            big = bytes(range(256)) * 4096  # 1 MiB value
            await r.set(prefix + "big", big)
            assert await r.get(prefix + "big") == big
            assert await r.get(prefix + "missing") is None
            await r.set(prefix + "ttl", "x", px=100)
            assert await r.exists(prefix + "ttl") == 1
            await asyncio.sleep(0.25)
            assert await r.exists(prefix + "ttl") == 0

            # a pipeline of 1,000 commands, one round trip
            async with r.pipeline(transaction=False) as p:
                for i in range(1000):
                    p.set(f"{prefix}k{i}", i)
                for i in range(1000):
                    p.get(f"{prefix}k{i}")
                out = await p.execute()
            assert out[:1000] == [True] * 1000
            assert out[1000:] == [str(i).encode() for i in range(1000)]

            # MULTI/EXEC
            async with r.pipeline(transaction=True) as p:
                out = await p.incr(prefix + "n").incr(prefix + "n").lpush(prefix + "l", "a", "b").execute()
            assert out == [1, 2, 2]
            assert await r.lrange(prefix + "l", 0, -1) == [b"b", b"a"]

            # 100 concurrent commands over the connection pool
            vals = await asyncio.gather(*(r.get(f"{prefix}k{i}") for i in range(100)))
            assert vals == [str(i).encode() for i in range(100)]
        finally:
            keys = [k async for k in r.scan_iter(prefix + "*")]
            if keys:
                await r.delete(*keys)
            await r.aclose()

    arun(main)


def test_pubsub(arun, redis_server):
    channel = f"compat:{arun.name}:chan"

    async def main():
        r = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        pubsub = r.pubsub()
        try:
            await pubsub.subscribe(channel)
            msg = await pubsub.get_message(timeout=5)
            assert msg["type"] == "subscribe" and msg["channel"] == channel.encode()

            received = []

            async def reader():
                while len(received) < 200:
                    m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if m is not None:
                        received.append(m["data"])

            task = asyncio.create_task(reader())
            for i in range(200):
                assert await r.publish(channel, f"msg {i}") == 1  # one subscriber got it
            await task
            assert received == [f"msg {i}".encode() for i in range(200)]

            await pubsub.unsubscribe(channel)
            msg = await pubsub.get_message(timeout=5)
            assert msg["type"] == "unsubscribe"
            assert await r.publish(channel, "nobody") == 0
        finally:
            await pubsub.aclose()
            await r.aclose()

    arun(main)


def test_unix_socket(arun, redis_server):
    async def main():
        r = aioredis.Redis(unix_socket_path=redis_server.unix_path)
        try:
            key = f"compat:{arun.name}:unix"
            await r.set(key, b"x" * 100_000)
            assert await r.strlen(key) == 100_000
            info = await r.client_info()
            assert info["laddr"].endswith("redis.sock:0") or "redis.sock" in info["laddr"], info
            await r.delete(key)
        finally:
            await r.aclose()

    arun(main)
