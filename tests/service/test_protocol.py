"""Every connection the service accepts has Nagle's algorithm off (uvicorn issue #3149)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from careplan_rules.service.protocol import NoDelayHTTPProtocol


class Transport:
    """Just what uvicorn's protocols ask a transport for when a connection is made."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.sock, "sockname": self.sock.getsockname(), "peername": self.sock.getpeername()}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return False


def test_a_connection_accepted_on_a_proto_0_listener_gets_tcp_nodelay() -> None:
    # how uvicorn binds for --workers N: proto left at 0, which accepted sockets inherit
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                config = uvicorn.Config(app=lambda scope, receive, send: None, log_level="warning")
                loop = asyncio.new_event_loop()  # its own: another test may have closed the default one
                try:
                    protocol = NoDelayHTTPProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
                    protocol.connection_made(Transport(accepted))
                finally:
                    loop.close()
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                assert client.fileno() >= 0
