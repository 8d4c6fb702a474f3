"""asyncpg against a real PostgreSQL (started by the `postgres` fixture on loopback):
create, insert, select, a 10,000-row copy_records_to_table, a rolled-back transaction,
a connection pool under concurrency, and a server-side error."""

import asyncio
import datetime
import decimal

import asyncpg
import pytest


def test_crud_copy_and_rollback(arun, postgres):
    table = f"compat_{arun.name}"

    async def main():
        conn = await asyncpg.connect(
            host=postgres.host, port=postgres.port, user=postgres.user, database=postgres.database
        )
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(f"""CREATE TABLE {table} (
                id integer PRIMARY KEY, name text NOT NULL, price numeric(10,2),
                created timestamptz, tags text[], payload bytea)""")
            now = datetime.datetime(2024, 5, 17, 12, 30, tzinfo=datetime.timezone.utc)
            await conn.executemany(
                f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (i, f"item-{i}", decimal.Decimal(f"{i}.25"), now, [f"t{i}", "x"], bytes([i]) * i)
                    for i in range(1, 11)
                ],
            )
            row = await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", 7)
            assert dict(row) == {
                "id": 7,
                "name": "item-7",
                "price": decimal.Decimal("7.25"),
                "created": now,
                "tags": ["t7", "x"],
                "payload": b"\x07" * 7,
            }
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 10

            # 10,000 rows through COPY
            records = [
                (i, f"copied-{i}", decimal.Decimal(i) / 4, now, None, None) for i in range(1000, 11000)
            ]
            status = await conn.copy_records_to_table(table, records=records)
            assert status == "COPY 10000"
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 10010
            assert await conn.fetchval(f"SELECT sum(id) FROM {table} WHERE id >= 1000") == sum(
                range(1000, 11000)
            )
            rows = await conn.fetch(f"SELECT id, name FROM {table} WHERE id >= 1000 ORDER BY id")
            assert len(rows) == 10000
            assert rows[0]["name"] == "copied-1000" and rows[-1]["name"] == "copied-10999"

            # a cursor inside a transaction, prefetching in batches
            async with conn.transaction():
                n = 0
                async for _ in conn.cursor(f"SELECT id FROM {table} ORDER BY id", prefetch=500):
                    n += 1
                assert n == 10010

            # a transaction rolled back: nothing of it stays
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute(f"DELETE FROM {table} WHERE id < 5000")
                    await conn.execute(f"UPDATE {table} SET name = 'changed'")
                    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 10010 - 10 - 4000
                    raise ZeroDivisionError
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 10010
            assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE name = 'changed'") == 0

            # a server-side error comes back as asyncpg's exception, the connection stays usable
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(f"INSERT INTO {table} (id, name) VALUES (7, 'dup')")
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch("SELECT * FROM no_such_table_here")
            assert await conn.fetchval("SELECT 1 + 1") == 2
        finally:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.close()

    arun(main)


def test_pool_concurrency(arun, postgres):
    async def main():
        async with asyncpg.create_pool(postgres.dsn(), min_size=2, max_size=8) as pool:

            async def one(i):
                async with pool.acquire() as conn:
                    # pg_sleep keeps each connection busy so the pool really runs in parallel
                    return await conn.fetchval("SELECT $1::int * 2 FROM pg_sleep(0.05)", i)

            t0 = asyncio.get_running_loop().time()
            results = await asyncio.gather(*(one(i) for i in range(64)))
            elapsed = asyncio.get_running_loop().time() - t0
            assert results == [i * 2 for i in range(64)]
            assert elapsed < 64 * 0.05 / 2  # 8 connections: well under serial time
            # a query cancelled by a timeout is cancelled on the server; the pool recovers
            with pytest.raises(asyncio.TimeoutError):
                await pool.fetchval("SELECT pg_sleep(5)", timeout=0.2)
            assert await pool.fetchval("SELECT 42") == 42

    arun(main)


def test_ssl_and_unix_socket(arun, postgres):
    """asyncpg's TLS path (SSLRequest, then loop.start_tls on the open connection) with
    certificate verification, and a connection over the server's Unix socket."""

    async def main():
        conn = await asyncpg.connect(
            host=postgres.host,
            port=postgres.port,
            user=postgres.user,
            database=postgres.database,
            ssl=postgres.client_ssl_context(),
        )
        try:
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
            data = bytes(range(256)) * 4096  # 1 MiB through TLS each way
            assert await conn.fetchval("SELECT $1::bytea", data) == data
            assert await conn.fetchval("SELECT count(*) FROM generate_series(1, 100000)") == 100000
        finally:
            await conn.close()

        # verification on: a client that does not trust the server's CA is refused
        import ssl

        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncpg.connect(
                host=postgres.host,
                port=postgres.port,
                user=postgres.user,
                database=postgres.database,
                ssl=ssl.create_default_context(),
            )

        conn = await asyncpg.connect(
            host=postgres.socket_dir, port=postgres.port, user=postgres.user, database=postgres.database
        )
        try:
            assert await conn.fetchval("SELECT inet_server_addr()") is None  # a Unix socket
            rows = await conn.fetch("SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
            assert len(rows) == 5000 and rows[-1][0] == 5000
        finally:
            await conn.close()

    arun(main)
