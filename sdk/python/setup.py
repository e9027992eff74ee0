"""Builds the package with its gRPC stubs generated from the repository's
`proto/` (or `AIRT_PROTO_DIR`): `airt.<service>.v1.<service>_pb2` and
`_pb2_grpc`, with type stubs (`.pyi`)."""

import os
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        import grpc_tools
        from grpc_tools import protoc

        proto = pathlib.Path(os.environ.get("AIRT_PROTO_DIR", HERE.parent.parent / "proto")).resolve()
        files = sorted(str(p.relative_to(proto)) for p in proto.rglob("*.proto"))
        if not files:
            raise RuntimeError(f"no .proto files under {proto} (set AIRT_PROTO_DIR)")
        well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
        out = pathlib.Path(self.build_lib)
        out.mkdir(parents=True, exist_ok=True)
        code = protoc.main([
            "protoc", f"-I{proto}", f"-I{well_known}",
            f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
            *files,
        ])
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) on {proto}")


setup(cmdclass={"build_py": BuildWithStubs})
