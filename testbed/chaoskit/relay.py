"""A fault-injecting TCP relay between the mirrorgate instances and the brokers.

Brokers started with `testbed/kafka up --relay` advertise, on their RELAY listener, the
ports this relay listens on; mirrorgate is given those as its bootstrap addresses, so
every connection it opens to a broker passes through here. On accept the relay finds
which instance opened the connection (the peer socket's inode, looked up in the
instances' file descriptors), so faults can hit one instance and one cluster:

- drop: every current connection of that instance to that cluster is closed;
- blackhole: for some seconds nothing is forwarded either way and new connections
  stall, as when packets are lost; afterwards the bytes flow again.

Only loopback addresses are used.
"""

import asyncio
import os
import threading
import time


def _socket_inode(local_port, remote_port):
    """Inode of the loopback socket local_port -> remote_port, from /proc/net/tcp."""
    want_local = "0100007F:%04X" % local_port
    want_remote = "0100007F:%04X" % remote_port
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] == want_local and fields[2] == want_remote:
                    return fields[9]
    except OSError:
        pass
    return None


def _owner_of(inode, pids):
    target = "socket:[%s]" % inode
    for name, pid in pids().items():
        fd_dir = "/proc/%d/fd" % pid
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(os.path.join(fd_dir, fd)) == target:
                        return name
                except OSError:
                    continue
        except OSError:
            continue
    return None


class Relay:
    """routes: {listen_port: (cluster, upstream_port)}; pids(): {instance: pid}."""

    def __init__(self, routes, pids):
        self.routes = routes
        self.pids = pids
        self.loop = asyncio.new_event_loop()
        self.conns = set()
        self.holes = {}  # (instance, cluster) -> monotonic end
        self.stats = {"accepted": 0, "unknown_owner": 0, "dropped": 0}
        self._servers = []
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def start(self):
        ready = threading.Event()
        self._ready = ready
        self._thread.start()
        ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def boot():
            for port, (cluster, upstream) in self.routes.items():
                server = await asyncio.start_server(
                    lambda r, w, c=cluster, u=upstream, p=port: self._serve(r, w, c, u, p),
                    "127.0.0.1",
                    port,
                    reuse_address=True,
                )
                self._servers.append(server)
            self._ready.set()

        self.loop.run_until_complete(boot())
        self.loop.run_forever()

    def stop(self):
        def close():
            for s in self._servers:
                s.close()
            for c in list(self.conns):
                c.close()
            # Connection tasks end before the loop stops, so none is left pending.
            tasks = list(asyncio.all_tasks(self.loop))
            if not tasks:
                self.loop.stop()
                return
            for t in tasks:
                t.cancel()
            asyncio.gather(*tasks, return_exceptions=True).add_done_callback(lambda _: self.loop.stop())

        self.loop.call_soon_threadsafe(close)
        self._thread.join(5)

    # --- faults (called from other threads) ---

    def drop(self, instance, cluster):
        def run():
            n = 0
            for c in list(self.conns):
                if c.owner == instance and c.cluster == cluster:
                    c.close()
                    n += 1
            self.stats["dropped"] += n

        self.loop.call_soon_threadsafe(run)

    def blackhole(self, instance, cluster, seconds):
        end = time.monotonic() + seconds
        self.loop.call_soon_threadsafe(self.holes.__setitem__, (instance, cluster), end)

    def heal(self):
        self.loop.call_soon_threadsafe(self.holes.clear)

    # --- relaying ---

    async def _wait_hole(self, owner, cluster):
        while True:
            end = self.holes.get((owner, cluster))
            now = time.monotonic()
            if end is None or end <= now:
                return
            await asyncio.sleep(min(0.1, end - now))

    async def _serve(self, reader, writer, cluster, upstream, listen_port):
        peer = writer.get_extra_info("peername")
        owner = None
        inode = _socket_inode(peer[1], listen_port) if peer else None
        if inode:
            owner = _owner_of(inode, self.pids)
        self.stats["accepted"] += 1
        if owner is None:
            self.stats["unknown_owner"] += 1
        conn = _Conn(owner, cluster, writer)
        self.conns.add(conn)
        try:
            await self._wait_hole(owner, cluster)
            if conn.closed:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
            conn.upstream = up_writer
            if conn.closed:
                up_writer.close()
                return
            await asyncio.gather(
                self._pump(reader, up_writer, conn),
                self._pump(up_reader, writer, conn),
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            conn.close()
            self.conns.discard(conn)

    async def _pump(self, reader, writer, conn):
        try:
            while not conn.closed:
                data = await reader.read(1 << 16)
                if not data:
                    break
                await self._wait_hole(conn.owner, conn.cluster)
                if conn.closed:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            conn.close()


class _Conn:
    def __init__(self, owner, cluster, client_writer):
        self.owner = owner
        self.cluster = cluster
        self.client = client_writer
        self.upstream = None
        self.closed = False

    def close(self):
        if self.closed:
            return
        self.closed = True
        for w in (self.client, self.upstream):
            if w is not None:
                try:
                    w.transport.abort()
                except Exception:  # noqa: BLE001 - closing a dead transport
                    pass
