"""Container logs: the kubelet's HTTPS `/containerLogs` endpoint and a direct command-line reader.

`kubectl logs` asks the apiserver, which calls https://<node InternalIP>:10250/containerLogs/
NS/POD/CONTAINER. The node serves that path only (HTTP/1.1, self-signed certificate; the
apiserver does not verify it unless given --kubelet-certificate-authority). Without a running
node, `python -m localcluster.logs POD [-n NS] [-c C] [-p]` reads the same files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path

Locator = Callable[[str, str, str, bool], Path | None]


def index_entry(pod_dir: Path, *, namespace: str, name: str, containers: list[str]) -> None:
    """Record which pod a folder belongs to, for the command-line reader."""
    pod_dir.mkdir(parents=True, exist_ok=True)
    meta = {"namespace": namespace, "name": name, "containers": containers}
    (pod_dir / "pod.json").write_text(json.dumps(meta))


def latest_log(pod_dir: Path, container: str, *, previous: bool) -> Path | None:
    """The newest (or the one before, for --previous) log file of a container."""
    folder = pod_dir / "logs" / container
    runs = sorted((int(p.stem), p) for p in folder.glob("*.log")) if folder.is_dir() else []
    index = -2 if previous else -1
    return runs[index][1] if len(runs) >= abs(index) else None


def tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    """Apply tailLines then limitBytes as the kubelet does."""
    if lines is not None:
        parts = data.splitlines(keepends=True)
        data = b"".join(parts[-lines:]) if lines > 0 else b""
    if limit is not None:
        data = data[:limit]
    return data


def parse_request(head: bytes) -> tuple[list[str], dict[str, str]]:
    """Path segments and query of the request line."""
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    target = request_line.split(" ")[1] if " " in request_line else "/"
    url = urllib.parse.urlsplit(target)
    segments = [urllib.parse.unquote(s) for s in url.path.split("/") if s]
    query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
    return segments, query


async def _respond(writer: asyncio.StreamWriter, code: int, body: bytes) -> None:
    head = f"HTTP/1.1 {code} {'OK' if code == 200 else 'Not Found'}\r\nContent-Type: text/plain\r\n"
    writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read()


async def _follow(writer: asyncio.StreamWriter, path: Path, start: bytes) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    offset = (await asyncio.to_thread(path.stat)).st_size
    chunk = start
    while True:
        if chunk:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        await asyncio.sleep(0.5)
        if writer.is_closing():
            return
        chunk = await asyncio.to_thread(_read_from, path, offset)
        offset += len(chunk)


async def handle(
    locate: Locator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one request for /containerLogs/NS/POD/CONTAINER."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        segments, query = parse_request(head)
        if len(segments) != 4 or segments[0] != "containerLogs":
            await _respond(writer, 404, b"only /containerLogs/NS/POD/CONTAINER is served\n")
            return
        path = locate(segments[1], segments[2], segments[3], query.get("previous") == "true")
        if path is None:
            await _respond(writer, 404, b"no such container log\n")
            return
        lines = int(query["tailLines"]) if "tailLines" in query else None
        limit = int(query["limitBytes"]) if "limitBytes" in query else None
        data = tail(await asyncio.to_thread(path.read_bytes), lines, limit)
        if query.get("follow") == "true":
            await _follow(writer, path, data)
        else:
            await _respond(writer, 200, data)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


def ensure_certificate(folder: Path, *, ip: str) -> tuple[Path, Path]:
    """A self-signed serving certificate for the node's address, made once with openssl."""
    cert, key = folder / "kubelet.crt", folder / "kubelet.key"
    if not cert.exists() or not key.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=local-node",
             "-addext", f"subjectAltName=IP:{ip}"],
            check=True, capture_output=True,
        )  # fmt: skip
    return cert, key


async def serve(locate: Locator, *, folder: Path, ip: str, port: int = 10250) -> asyncio.Server:
    """Start the HTTPS log endpoint on ip:port."""
    cert, key = await asyncio.to_thread(ensure_certificate, folder, ip=ip)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["http/1.1"])

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await handle(locate, r, w)

    return await asyncio.start_server(on_client, ip, port, ssl=context, reuse_address=True)


def find_pod_dir(state_dir: Path, *, namespace: str, name: str) -> Path | None:
    """The newest pod folder recorded for namespace/name."""
    best: tuple[float, Path] | None = None
    for meta_file in (state_dir / "pods").glob("*/pod.json"):
        meta = json.loads(meta_file.read_text())
        if (meta["namespace"], meta["name"]) == (namespace, name):
            mtime = meta_file.stat().st_mtime
            if best is None or mtime > best[0]:
                best = (mtime, meta_file.parent)
    return best[1] if best else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.logs", description=__doc__)
    parser.add_argument("pod")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("-c", "--container")
    parser.add_argument("-p", "--previous", action="store_true")
    default_dir = Path(
        os.environ.get("LLMOP_CLUSTER_DIR", Path.home() / ".cache/llm-operator/cluster")
    )
    parser.add_argument("--state-dir", type=Path, default=default_dir / "node", help="DIR/node")
    args = parser.parse_args(argv)
    pod_dir = find_pod_dir(args.state_dir, namespace=args.namespace, name=args.pod)
    if pod_dir is None:
        print(f"no pod {args.namespace}/{args.pod} on this node", file=sys.stderr)
        return 1
    container = args.container or json.loads((pod_dir / "pod.json").read_text())["containers"][0]
    path = latest_log(pod_dir, container, previous=args.previous)
    if path is None:
        print(f"no log for container {container}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(path.read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
