"""`{{name}}`: a dtm-host microservice driver in Python (see README.md and wit/driver.wit)."""

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import Activation, Registration, Resolution, ServerMethod

SCHEME = "{{scheme}}"


class WitWorld(wit_world.WitWorld):
    def name(self) -> str:
        return "{{name}}"

    def activate(self) -> Activation:
        return Activation([SCHEME], False, False)

    def parse_server_method(self, uri: str) -> ServerMethod:
        """Splits a branch URL into the server to dial and the gRPC method."""
        # TODO: the parse rule; vectors.json lists what it must return.
        raise Err("%s: parse-server-method is not written yet" % uri)

    def register_service(self, target: str, endpoint: str) -> Registration:
        """Registers nothing: the coordinator is not announced anywhere."""
        return Registration("", 0)

    def keep_alive(self, state: str) -> Registration:
        return Registration(state, 0)

    def deregister(self, state: str) -> None:
        return None

    def resolve(self, server: str, registry: str) -> Resolution:
        """`scheme:///host:port` or `scheme://host:port`: dial `host:port`."""
        rest = server.split("://", 1)[-1]
        endpoint = rest.lstrip("/").split("/")[0]
        if not endpoint:
            raise Err("'%s' names no endpoint" % server)
        return Resolution([endpoint], 0)

    def rewrite_http(self, url: str, registry: str):
        return None

    def rewrite_grpc(self, server: str, method: str, payload: bytes):
        return None
