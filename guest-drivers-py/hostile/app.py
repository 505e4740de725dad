"""`dtm-driver-hostile` in Python, for the host's sandbox tests only (tests/polyglot_drivers.rs):
the Python counterpart of the Rust guest `guest-drivers/hostile`. Its parse-server-method
misbehaves on purpose when a URL starts with `loop/` (spins forever) or `grow/` (keeps
allocating 8 MiB buffers until memory runs out: big steps, so the memory cap stops it long
before the time limit could); any other URL splits at its first slash."""

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Activation, Registration, ServerMethod


class WitWorld(wit_world.WitWorld):
    def name(self) -> str:
        return "dtm-driver-hostile"

    def activate(self) -> Activation:
        return Activation(["hostile"], False, False)

    def parse_server_method(self, uri: str) -> ServerMethod:
        kind = uri.split("/")[0]
        if kind == "loop":
            spins = 0
            while True:
                spins += 1
        if kind == "grow":
            hoard = []
            while True:
                hoard.append(bytearray(8 << 20))
        at = uri.find("/")
        if at < 0:
            raise Err("bad url: '%s'. no '/' found" % uri)
        return ServerMethod(uri[:at], uri[at:])

    def register_service(self, target: str, endpoint: str) -> Registration:
        return Registration("", 0)

    def keep_alive(self, state: str) -> Registration:
        return Registration(state, 0)

    def deregister(self, state: str) -> None:
        return None

    def resolve(self, server: str, registry: str):
        raise Err("'%s': the hostile driver resolves nothing" % server)

    def rewrite_http(self, url: str, registry: str):
        return None

    def rewrite_grpc(self, server: str, method: str, payload: bytes):
        return None
