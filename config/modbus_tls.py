"""Each device's ``modbus.tls`` (Modbus/TCP Security): files found, password read, contexts tried at ``facwatch check``.

A missing CA, a key that does not fit its certificate or a wrong key password stops facwatch at
start with file, line and path, instead of failing every poll later. Messages never contain the
key password. Devices behind one host:port share one connection, so they must agree on TLS.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from collectors.modbus_tls import MODBUS_SECURITY_PORT, ModbusTlsFiles, identity_problems
from config.schema import Device, ModbusTls
from config.tls_files import read_key_password, relative_path
from config.yamlfile import Problem, YamlDocument

PLAIN_MODBUS_PORT = 502
Located = tuple[tuple[str | int, ...], str]  # (path below devices[i].modbus.tls, message)


def resolve_modbus_tls(devices: Iterable[tuple[int, Device]], doc: YamlDocument, source: Path
                       ) -> tuple[dict[str, ModbusTlsFiles], list[Problem], list[Problem]]:
    """Every TLS device's files by device id, the problems (errors) and the warnings; ``devices``: Modbus ones."""
    resolved: dict[str, ModbusTlsFiles] = {}
    problems: list[Problem] = []
    warnings: list[Problem] = []
    devices = list(devices)
    for index, device in devices:
        tls = device.modbus.tls if device.modbus else None
        if tls is None:
            continue
        where = ("devices", index, "modbus", "tls")
        files, located = resolve_one(device, tls, source)
        problems += [doc.problem((*where, *path), message) for path, message in located]
        resolved[device.id] = files
        if device.port == PLAIN_MODBUS_PORT:
            warnings.append(doc.problem(("devices", index, "port"), (
                f"TLS on port {PLAIN_MODBUS_PORT}: Modbus/TCP Security uses port {MODBUS_SECURITY_PORT}; "
                "check that the device really serves TLS here")))
    problems += _gateway_disagreements(devices, doc)
    return resolved, problems, warnings


def resolve_one(device: Device, tls: ModbusTls, source: Path) -> tuple[ModbusTlsFiles, list[Located]]:
    """One device's TLS files with absolute paths and the key password read; and why they cannot be used."""
    base = source.parent
    password, problems = read_key_password(tls.key_password, source)
    simulator = tls.simulator
    files = ModbusTlsFiles(
        ca_file=_relative(base, tls.ca_file), server_name=tls.server_name or device.host,
        cert_file=_relative(base, tls.cert_file), key_file=_relative(base, tls.key_file), key_password=password,
        server_cert_file=_relative(base, simulator.cert_file if simulator else None),
        server_key_file=_relative(base, simulator.key_file if simulator else None))
    problems += list(_unreadable(tls, files))
    if not problems:
        problems += [((field,), f"{_written(tls, field)} {why}") for field, why in identity_problems(files)]
    return files, problems


def _written(tls: ModbusTls, field: str) -> str:
    """A file as the operator wrote it (``key_password`` names the key it should open)."""
    return "key_password" if field == "key_password" else str(getattr(tls, field))


def _unreadable(tls: ModbusTls, files: ModbusTlsFiles) -> Iterator[Located]:
    """Each configured file that cannot be opened, named as written and as resolved."""
    simulator = tls.simulator
    named = [(("ca_file",), tls.ca_file, files.ca_file), (("cert_file",), tls.cert_file, files.cert_file),
             (("key_file",), tls.key_file, files.key_file),
             (("simulator", "cert_file"), simulator.cert_file if simulator else None, files.server_cert_file),
             (("simulator", "key_file"), simulator.key_file if simulator else None, files.server_key_file)]
    for path, written, resolved in named:
        if written is None or resolved is None:
            continue
        try:
            with resolved.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            yield path, f"cannot read {written} ({resolved}): {exc.strerror or exc}"
        except (ValueError, RuntimeError) as exc:  # a NUL in the path; "~nobody" with no such user
            yield path, f"cannot read {written}: {exc}"


def _gateway_disagreements(devices: list[tuple[int, Device]], doc: YamlDocument) -> Iterator[Problem]:
    """Devices behind one host:port share one connection: plain and TLS, or two TLS setups, cannot mix."""
    first: dict[tuple[str, int], tuple[str, ModbusTls | None]] = {}
    for index, device in devices:
        key = (device.host.lower(), device.port)
        tls = device.modbus.tls if device.modbus else None
        if key not in first:
            first[key] = (device.id, tls)
        elif first[key][1] != tls:
            yield doc.problem(("devices", index, "modbus"), (
                f"{device.host}:{device.port} is also device {first[key][0]!r} with a different modbus.tls; "
                "devices behind one host:port share one connection and must use the same TLS settings"))


def _relative(base: Path, name: str | None) -> Path | None:
    return None if name is None else relative_path(base, name)
