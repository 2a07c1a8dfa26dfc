"""Send N keep-alive GETs over one connection, one after another (for bench/instructions.sh).

python -m bench.drive PORT PATH N [BEARER_TOKEN]
"""

import socket
import sys


def main() -> None:
    port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else None
    bearer = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{bearer}\r\n".encode()
    statuses: dict[str, int] = {}
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buffer = b""
        for _ in range(count):
            sock.sendall(request)
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    head = buffer[:end].decode("latin-1").lower().split("\r\n")
                    length = next(
                        (int(h.split(":", 1)[1]) for h in head if h.startswith("content-length:")),
                        0,
                    )
                    if len(buffer) >= end + 4 + length:
                        status = head[0].split(" ")[1]
                        statuses[status] = statuses.get(status, 0) + 1
                        buffer = buffer[end + 4 + length :]
                        break
                buffer += sock.recv(65536)
    print(statuses)


if __name__ == "__main__":
    main()
