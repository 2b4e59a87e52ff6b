#!/usr/bin/env python3
"""Assemble a single-layer container image as a docker-archive tarball (the format
`docker save` writes and `ctr images import` reads) from local files only.

usage: mkimage.py OUT.tar NAME:TAG [--entrypoint JSON] [--cmd JSON] [--env K=V ...]
                  [--symlink LINK=TARGET ...] SRC=DEST [SRC=DEST ...]

SRC=DEST copies a host file into the image at DEST (mode kept). Names should be fully
qualified (localhost/clusterplane/pause:3.2) so that an accidental pull can only ever go
to localhost. Layers are reproducible (every mtime is 0).
"""

import argparse
import hashlib
import io
import json
import os
import tarfile
import time

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    archive.addfile(info, io.BytesIO(data))


def build_layer(files: list[str], symlinks: list[str]) -> bytes:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        dirs: set[str] = set()

        def add_dir(path: str) -> None:
            path = path.strip("/")
            if not path or path in dirs:
                return
            add_dir(os.path.dirname(path))
            dirs.add(path)
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            archive.addfile(info)

        for path in ("tmp", "etc", "proc", "sys", "dev", "bin", "var/log"):
            add_dir(path)
        for spec in files:
            src, dest = spec.split("=", 1)
            add_dir(os.path.dirname(dest))
            with open(src, "rb") as handle:
                add_bytes(archive, dest.lstrip("/"), handle.read(), os.stat(src).st_mode & 0o7777)
        for spec in symlinks:
            link, target = spec.split("=", 1)
            add_dir(os.path.dirname(link))
            info = tarfile.TarInfo(link.lstrip("/"))
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, 0
            archive.addfile(info)
        add_bytes(archive, "etc/passwd", PASSWD)
        add_bytes(archive, "etc/group", GROUP)
    return layer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("ref")
    parser.add_argument("--entrypoint")
    parser.add_argument("--cmd")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--symlink", action="append", default=[])
    parser.add_argument("files", nargs="*")
    args = parser.parse_intermixed_args()
    layer = build_layer(args.files, args.symlink)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env]
    config: dict[str, object] = {"Env": env, "WorkingDir": "/"}
    if args.entrypoint:
        config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        config["Cmd"] = json.loads(args.cmd)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "clusterplane scripts/kubernetes/mkimage.py"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[7:] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [args.ref], "Layers": [layer_name]}]
    with tarfile.open(args.out, "w") as out:
        add_bytes(out, layer_name, layer)
        add_bytes(out, config_name, config_bytes)
        add_bytes(out, "manifest.json", json.dumps(manifest).encode())


if __name__ == "__main__":
    main()
