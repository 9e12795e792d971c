"""Streams a Debian root tarball to stdout without what debian:*-slim drops.

Reads the tar named by argv[1] (from .ci/rootfs) and writes a tar on stdout
for `docker import`: without apt's package lists and downloaded archives,
documentation (copyright files kept), man/info pages and locales, and with
the dpkg and apt settings the official slim images carry, so packages
installed later in the image stay slim too.
"""
import io
import sys
import tarfile

DROP = (
    "var/lib/apt/lists/",
    "var/cache/apt/",
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/groff/",
    "usr/share/lintian/",
)

ADD = {
    "etc/dpkg/dpkg.cfg.d/docker": "\n".join([
        "path-exclude /usr/share/doc/*",
        "path-include /usr/share/doc/*/copyright",
        "path-exclude /usr/share/man/*",
        "path-exclude /usr/share/info/*",
        "path-exclude /usr/share/locale/*",
        "path-exclude /usr/share/groff/*",
        "path-exclude /usr/share/lintian/*",
        "",
    ]),
    "etc/apt/apt.conf.d/docker-clean": "\n".join([
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };',
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";',
        'Acquire::Languages "none";',
        "",
    ]),
}


def keep(name):
    path = name[2:] if name.startswith("./") else name
    for prefix in DROP:
        if path.startswith(prefix) and path != prefix.rstrip("/"):
            # The directories stay (apt expects them); copyright notices stay.
            if prefix == "usr/share/doc/" and path.endswith("/copyright"):
                return True
            if prefix in ("var/lib/apt/lists/", "var/cache/apt/") and path.endswith(
                ("/partial", "/archives", "/auxfiles")
            ):
                return True
            return False
    return True


with tarfile.open(sys.argv[1], "r:") as src, tarfile.open(
    fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT
) as dst:
    for member in src:
        if not keep(member.name):
            continue
        data = src.extractfile(member) if member.isreg() else None
        dst.addfile(member, data)
    for name, text in ADD.items():
        body = text.encode()
        info = tarfile.TarInfo("./" + name)
        info.size = len(body)
        info.mode = 0o644
        dst.addfile(info, io.BytesIO(body))
