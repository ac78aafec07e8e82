"""Evidence for tagger's onnxruntime-gpu decision table (tagger/ort_table.py), without a GPU.

    python tools/ortgpu_evidence.py --cache /tmp/ortgpu all --clean   # survey, torch, prove
    python tools/ortgpu_evidence.py --cache /tmp/ortgpu prove --only a1111,forge
    python tools/ortgpu_evidence.py markdown                          # the docs tables

- ``survey``: downloads each onnxruntime-gpu release on PyPI (Linux x86_64, this Python) with
  ``pip download --no-deps`` and reads its CUDA provider library: ``DT_NEEDED``, the CUDA
  version in ``build_and_package_info.py``, and the cuDNN/cuFFT sonames the provider opens
  itself (names built in code, found by scanning the binary).
- ``torch``: for each host's torch wheel, what ``torch/lib/libtorch_global_deps.so`` (loaded
  globally by ``import torch``) links, and its RPATH: the folders torch loads CUDA from.
- ``prove``: for every host, finds the NVIDIA wheels its torch pins (``pip install --dry-run
  --ignore-installed --report``, metadata only) and builds its environment for real under the
  cache (``pip install --target`` of those wheels, the row's onnxruntime-gpu, and the row's
  gpu-libs in a second folder), then runs ``ldd -r`` on the CUDA provider (and on each library
  onnxruntime opens itself) with torch's folders and tagger's gpu-libs folder on the library
  path. A row passes when every needed library resolves to a file whose SONAME is the name
  asked for, inside that environment, and no symbol is undefined; only the driver's
  ``libcuda.so.1`` may be missing (a stub stands in for it during the symbol check). The same
  environment is also checked with ``tagger.gpulibs`` (what ``tagger doctor`` reports), which
  must agree with ``ldd``.

Results go to ``tools/ortgpu_evidence.json`` (small; committed). The wheels stay in the cache
(outside the repository); ``--clean`` deletes the environments and wheels at the end. Needs
``pip``, ``readelf``, ``ldd`` and ``gcc`` (for the driver stub); never run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tagger import gpulibs, ort_table  # noqa: E402

OUT = REPO / "tools" / "ortgpu_evidence.json"
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
PLATFORMS += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]

#: The hosts: torch build, Python of the webui, and how its NVIDIA pins are known.
HOSTS = [
    {"key": "a1111", "name": "AUTOMATIC1111 1.10.1", "torch": "2.1.2", "cuda": "12.1",
     "cudnn": 8902, "python": [3, 10]},
    {"key": "forge", "name": "Forge", "torch": "2.3.1", "cuda": "12.1", "cudnn": 8902,
     "python": [3, 10]},
    {"key": "cu126", "name": "torch 2.7.1 (CUDA 12.6, cuDNN 9)", "torch": "2.7.1",
     "cuda": "12.6", "cudnn": 90501, "python": [3, 11]},
    {"key": "cu128", "name": "newer Forge builds: torch 2.8.0 (CUDA 12.8, cuDNN 9)",
     "torch": "2.8.0", "cuda": "12.8", "cudnn": 91002, "python": [3, 11]},
    {"key": "cu128-py310", "name": "torch 2.8.0 (CUDA 12.8) on Python 3.10", "torch": "2.8.0",
     "cuda": "12.8", "cudnn": 91002, "python": [3, 10]},
    {"key": "cu130", "name": "CUDA 13 torch 2.14.1+cu130", "torch": "2.14.1", "cuda": "13.0",
     "cudnn": 92400, "python": [3, 11]},
    {"key": "cu130-py310", "name": "CUDA 13 torch 2.14.1 on Python 3.10", "torch": "2.14.1",
     "cuda": "13.0", "cudnn": 92400, "python": [3, 10]},
    # torch's CUDA 11.8 builds are only on PyTorch's own index (not PyPI): their pins, as
    # PyTorch's binary build matrix (.github/scripts/generate_binary_build_matrix.py,
    # PYTORCH_EXTRA_INSTALL_REQUIREMENTS["11.8"]) lists them for torch 2.1-2.3.
    {"key": "cu118", "name": "CUDA 11.8 torch (2.1.2+cu118)", "torch": None, "cuda": "11.8",
     "cudnn": 8700, "python": [3, 10],
     "pins": ["nvidia-cuda-nvrtc-cu11==11.8.89", "nvidia-cuda-runtime-cu11==11.8.89",
              "nvidia-cuda-cupti-cu11==11.8.87", "nvidia-cudnn-cu11==8.7.0.84",
              "nvidia-cublas-cu11==11.11.3.6", "nvidia-cufft-cu11==10.9.0.58",
              "nvidia-curand-cu11==10.3.0.86", "nvidia-cusolver-cu11==11.4.1.48",
              "nvidia-cusparse-cu11==11.7.5.86"]},
]  # fmt: skip
#: Alternatives tried on a host (beside its row's choice), to show why a row is what it is.
ALTERNATIVES = {
    "a1111": [("onnxruntime-gpu==1.26.0", (ort_table.CUDNN9_CU12,)),
              ("onnxruntime-gpu==1.31.1", ())],
    "cu126": [("onnxruntime-gpu==1.26.0", ())],
    "cu130": [("onnxruntime-gpu==1.26.0", ())],
}  # fmt: skip
SKIP_PINS = ("nvidia-nccl", "nvidia-nvshmem", "nvidia-cusparselt", "nvidia-cufile", "triton")


def pip(*args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run this interpreter's pip; raise with its output when it fails."""
    command = [sys.executable, "-m", "pip", *args] + (["-q"] if quiet else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def download(requirement: str, dest: Path, python: str = PY) -> Path:
    """``pip download --no-deps`` one wheel into ``dest`` (reused when already there)."""
    dest.mkdir(parents=True, exist_ok=True)
    name, _, version = requirement.partition("==")
    stem = name.replace("-", "_").lower()
    for wheel in dest.glob("*.whl"):
        parts = wheel.name.split("-")
        if parts[0].lower() == stem and parts[1] == version and _fits(wheel.name, python):
            return wheel
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    pip("download", "--no-deps", "--only-binary=:all:", "--python-version", python,
        *platforms, "-d", str(dest), requirement)  # fmt: skip
    for wheel in sorted(dest.glob("*.whl"), key=lambda p: p.stat().st_mtime, reverse=True):
        parts = wheel.name.split("-")
        if parts[0].lower() == stem and parts[1] == version and _fits(wheel.name, python):
            return wheel
    raise RuntimeError(f"no wheel of {requirement} in {dest}")


def _fits(name: str, python: str) -> bool:
    """True when a wheel's python tag takes ``python`` (py3 or cpXY)."""
    tag = name.split("-")[2]
    return "py3" in tag or f"cp{python.replace('.', '')}" in tag


# -- survey ---------------------------------------------------------------------------------------
def scan_opened(data: bytes, families: tuple[str, ...] = ("libcudnn", "libcufft")) -> list[str]:
    """Sonames the provider builds in code before opening them (dlopen), e.g. ``libcudnn.so.9``.

    The compiler stores such short strings as 8-byte immediates: ``libcudnn`` then an
    overlapping ``dnn.so.9``; plain string literals are found too.
    """
    found: set[str] = set()
    for family in families:
        for match in re.finditer(re.escape(family.encode()) + rb"\.so\.[0-9]+", data):
            found.add(match.group().decode())
        for match in re.finditer(rb"H\xb8" + re.escape(family.encode()), data):
            window = data[match.end() : match.end() + 48]
            nxt = window.find(b"H\xb8")
            if nxt < 0:
                continue
            tail = window[nxt + 2 : nxt + 10]
            for overlap in range(len(family) - 1, 0, -1):
                if tail.startswith(family[-overlap:].encode()):
                    name = family + tail[overlap:].split(b"\0")[0].decode("latin-1")
                    head = re.match(r"lib\w+\.so\.[0-9]+", name)
                    if head:
                        found.add(head.group())
                    break
    return sorted(found)


def survey(cache: Path) -> list[dict]:
    """Read every onnxruntime-gpu release's CUDA provider."""
    listing = pip("index", "versions", "onnxruntime-gpu", "--only-binary=:all:",
                  "--python-version", PY, *[a for p in PLATFORMS for a in ("--platform", p)],
                  quiet=False).stdout  # fmt: skip
    versions = re.search(r"Available versions: (.*)", listing).group(1).split(", ")
    versions = sorted(
        (v for v in versions if ort_table.version_tuple(v) >= (1, 17)),
        key=ort_table.version_tuple,
    )
    builds = []
    for version in versions:
        wheel = download(f"onnxruntime-gpu=={version}", cache / "wheels")
        with zipfile.ZipFile(wheel) as archive:
            member = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
            target = cache / "providers" / version
            archive.extract(member, target)
            info_text = ""
            if "onnxruntime/capi/build_and_package_info.py" in archive.namelist():
                info_text = archive.read("onnxruntime/capi/build_and_package_info.py").decode()
        provider = target / member
        info = gpulibs.read_elf(provider)
        cuda = re.search(r"cuda_version = '([^']*)'", info_text)
        data = provider.read_bytes()
        opened = [n for n in scan_opened(data) if n not in info.needed]
        builds.append({
            "version": version,
            "wheel": wheel.name,
            "built_with_cuda": cuda.group(1) if cuda else None,
            "needed": [n for n in info.needed if gpulibs.is_cuda_library(n)],
            "opened_at_run_time": opened,
            "rpath": info.rpath, "runpath": info.runpath,
        })  # fmt: skip
        print(f"survey {version}: {builds[-1]['needed']} + opened {opened}", flush=True)
        provider.unlink()
        if not _row_versions().intersection({version}):
            wheel.unlink()
    return builds


def _row_versions() -> set[str]:
    """onnxruntime-gpu versions some row or alternative installs (their wheels are kept)."""
    versions = {r.ort_version for r in ort_table.ROWS if r.ort_version}
    versions |= {req.split("==")[1] for alts in ALTERNATIVES.values() for req, _ in alts}
    return versions


def check_table(builds: list[dict]) -> list[str]:
    """Where the table's ORT_BUILDS disagree with the survey (empty: they agree)."""
    problems = []
    for build in builds:
        family = ort_table.build_of(build["version"])
        if family is None:
            problems.append(f"{build['version']}: in no ORT_BUILDS family")
            continue
        needs = [n for n in build["needed"] if n != gpulibs.DRIVER_LIBRARY]
        if sorted(needs) != sorted(family.needs):
            problems.append(f"{build['version']}: needs {needs}, table {list(family.needs)}")
        if sorted(build["opened_at_run_time"]) != sorted(family.runtime_loaded):
            problems.append(
                f"{build['version']}: opens {build['opened_at_run_time']}, table "
                f"{list(family.runtime_loaded)}"
            )
        cuda = build["built_with_cuda"]
        if cuda and int(cuda.split(".")[0]) != family.cuda_major:
            problems.append(f"{build['version']}: built with CUDA {cuda}")
    return problems


# -- hosts ----------------------------------------------------------------------------------------
def host_pins(host: dict, cache: Path) -> list[str]:
    """The NVIDIA wheels (``name==version``) this host's torch installs on Linux x86_64."""
    if host.get("pins"):
        return list(host["pins"])
    report = (
        cache / "reports" / f"torch-{host['torch']}-py{host['python'][0]}{host['python'][1]}.json"
    )
    report.parent.mkdir(parents=True, exist_ok=True)
    if not report.exists():
        python = f"{host['python'][0]}.{host['python'][1]}"
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        pip("install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
            "--python-version", python, *platforms, "--target", str(cache / "unused"),
            "--report", str(report), f"torch=={host['torch']}")  # fmt: skip
    data = json.loads(report.read_text())
    pins = []
    for item in data["install"]:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if name.lower().startswith("nvidia-") and not name.lower().startswith(SKIP_PINS):
            pins.append(f"{name}=={version}")
    return sorted(pins)


def torch_rpath(host: dict, cache: Path) -> str:
    """The RPATH of torch's ``libtorch_global_deps.so`` (the folders torch loads CUDA from)."""
    if not host.get("torch"):
        return ""
    wheel = download(f"torch=={host['torch']}", cache / "torch")
    with zipfile.ZipFile(wheel) as archive:
        member = "torch/lib/libtorch_global_deps.so"
        archive.extract(member, cache / "torchlib" / host["torch"])
    return gpulibs.read_elf(cache / "torchlib" / host["torch"] / member).rpath


def torch_globals(cache: Path) -> list[dict]:
    """For each host's torch: what ``libtorch_global_deps.so`` (loaded ``RTLD_GLOBAL`` by
    ``import torch``) links and its RPATH. cuDNN absent there means torch's cuDNN stays out of
    the global symbol scope."""
    found = []
    for version in sorted(
        {h["torch"] for h in HOSTS if h.get("torch")}, key=ort_table.version_tuple
    ):
        host = next(h for h in HOSTS if h.get("torch") == version)
        rpath = torch_rpath(host, cache)
        info = gpulibs.read_elf(cache / "torchlib" / version / "torch/lib/libtorch_global_deps.so")
        found.append({"torch": version, "global_deps_needed": list(info.needed), "rpath": rpath})
        print(f"torch {version}: global deps {list(info.needed)}", flush=True)
    return found


# -- prove ----------------------------------------------------------------------------------------
def build_env(cache: Path, name: str, pins: list[str], ort: str, libs: tuple[str, ...],
              python: str) -> tuple[Path, Path]:  # fmt: skip
    """``pip install --target`` the host's NVIDIA wheels + onnxruntime-gpu (site) and the
    row's gpu-libs (a second folder). Returns (site, gpu_libs)."""
    env = cache / "envs" / name
    site, extra = env / "site-packages", env / "gpu-libs"
    if env.exists():
        shutil.rmtree(env)
    wheels = [download(p, cache / "nvidia", python) for p in pins]
    wheels.append(download(ort, cache / "wheels", python))
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    flags = ["--only-binary=:all:", "--python-version", python, *platforms]
    pip("install", "--no-deps", "--no-index", *flags, "--target", str(site), *map(str, wheels))
    if libs:
        extra_wheels = [download(p, cache / "nvidia", python) for p in libs]
        pip("install", "--no-deps", "--no-index", *flags, "--target", str(extra),
            *map(str, extra_wheels))  # fmt: skip
    return site, extra


def driver_stub(cache: Path, libraries: list[str]) -> Path:
    """A ``libcuda.so.1`` defining the driver symbols ``libraries`` import (for ``ldd -r`` only:
    no driver on this machine)."""
    names: set[str] = set()
    for library in libraries:
        out = subprocess.run(["readelf", "--dyn-syms", "-W", library], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 8 and parts[6] == "UND" and re.match(r"cu[A-Z]\w*$", parts[7]):
                names.add(parts[7])
    folder = cache / "driver-stub"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "stub.c"
    source.write_text("".join(f"int {n}(void) {{ return 100; }}\n" for n in sorted(names)))
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o",
                    str(folder / "libcuda.so.1"), str(source)], check=True)  # fmt: skip
    return folder


def ldd(library: str, path: list[str], preload: str = "") -> dict:
    """``ldd -r`` with ``path`` as LD_LIBRARY_PATH: resolved libraries and undefined symbols.

    ``preload``: onnxruntime's ``libonnxruntime_providers_shared.so``, which onnxruntime loads
    (globally) before any provider and which defines the ``Provider_GetHost`` they call.
    """
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(path))
    if preload:
        env["LD_PRELOAD"] = preload
    done = subprocess.run(["ldd", "-r", library], capture_output=True, text=True, env=env,
                          check=False)  # fmt: skip
    resolved, undefined = {}, []
    for line in (done.stdout + done.stderr).splitlines():
        match = re.match(r"\s*(\S+) => (not found|\S+)", line)
        if match:
            resolved[match.group(1)] = None if match.group(2) == "not found" else match.group(2)
        symbol = re.match(r"\s*undefined symbol: (\S+)", line)
        if symbol:
            undefined.append(symbol.group(1))
    return {"resolved": resolved, "undefined": undefined}


def prove_one(cache: Path, host: dict, ort: str, libs: tuple[str, ...], label: str,
              python: str | None = None) -> dict:  # fmt: skip
    """Build one environment and check the provider in it (see the module docstring).

    ``python``: the wheels' Python version (default the host's)."""
    python = python or f"{host['python'][0]}.{host['python'][1]}"
    pins = host_pins(host, cache)
    name = f"{host['key']}-{label}"
    site, extra = build_env(cache, name, pins, ort, libs, python)
    provider = site / "onnxruntime" / "capi" / "libonnxruntime_providers_cuda.so"
    version = ort.split("==")[1]
    family = ort_table.build_of(version)
    runtime = list(family.runtime_loaded) if family else []
    dirs = [(d, "site-packages") for d in gpulibs.nvidia_dirs([site])]
    dirs += [(d, "gpu-libs") for d in gpulibs.nvidia_dirs([extra])]
    path = [d for d, _ in dirs]
    stub = driver_stub(cache, [str(provider)])
    check = gpulibs.check_provider(provider, runtime_loaded=runtime, dirs=dirs, loaded={})
    shared = str(provider.parent / "libonnxruntime_providers_shared.so")
    first = ldd(str(provider), path)
    with_stub = ldd(str(provider), [*path, str(stub)], shared)
    libraries = {}
    for item in check.resolved:
        entry = {"path": _short(item.path, cache), "from": item.origin}
        if item.path:
            entry["soname"] = gpulibs.read_elf(item.path).soname
        if item.name in first["resolved"]:
            entry["ldd"] = _short(first["resolved"][item.name], cache)
        libraries[item.name] = entry
    opened = {}
    for soname in runtime:
        target = check.resolved[check.needed.index(soname)].path
        if target:
            result = ldd(target, [*path, str(stub)])
            opened[soname] = {
                "undefined": result["undefined"],
                "missing": [k for k, v in result["resolved"].items() if v is None],
            }
    problems = []
    for soname, entry in libraries.items():
        if soname == gpulibs.DRIVER_LIBRARY:
            continue
        if entry["path"] is None:
            problems.append(f"{soname} missing")
        elif entry["soname"] not in ("", soname):
            problems.append(f"{soname} resolves to a file whose SONAME is {entry['soname']}")
        if soname in first["resolved"] and entry.get("ldd") != entry["path"]:
            problems.append(
                f"{soname}: ldd found {entry.get('ldd')}, tagger.gpulibs {entry['path']}"
            )
    missing_ldd = [k for k, v in first["resolved"].items() if v is None]
    problems += [f"ldd: {k} not found" for k in missing_ldd if k != gpulibs.DRIVER_LIBRARY]
    problems += [f"undefined symbol {s}" for s in with_stub["undefined"]]
    for soname, result in opened.items():
        problems += [f"{soname}: undefined symbol {s}" for s in result["undefined"]]
        problems += [f"{soname}: needs {m}, not found" for m in result["missing"]
                     if m != gpulibs.DRIVER_LIBRARY]  # fmt: skip
    print(f"prove {name}: {'OK' if not problems else problems[:6]}", flush=True)
    return {
        "host": host["key"],
        "python": python,
        "onnxruntime": ort,
        "gpu_libs": list(libs),
        "torch_pins": pins,
        "libraries": libraries,
        "opened_at_run_time": opened,
        "ldd_not_found": missing_ldd,
        "undefined_symbols": with_stub["undefined"][:20],
        "undefined_count": len(with_stub["undefined"]),
        "problems": problems,
        "ok": not problems,
    }


def _short(path: str | None, cache: Path) -> str | None:
    """A path relative to the environment (``site-packages/...``, ``gpu-libs/...``)."""
    if path is None:
        return None
    text = str(path)
    for marker in ("/site-packages/", "/gpu-libs/"):
        if marker in text:
            return marker.strip("/") + "/" + text.split(marker, 1)[1]
    return text.replace(str(cache), "<cache>")


def prove(cache: Path, record: dict, out: Path, only: set[str] | None = None) -> list[dict]:
    """Every host with its row's choice, plus the alternatives that show why. Results replace
    the host's earlier ones in ``record["rows"]``; ``out`` is rewritten after each host."""
    results = list(record.get("rows", []))
    for host in HOSTS:
        if only and host["key"] not in only:
            continue
        build = ort_table.TorchBuild(host["torch"] or "2.1.2", cuda=host["cuda"],
                                     cudnn=host["cudnn"], python=tuple(host["python"]))  # fmt: skip
        chosen = ort_table.choose(build)
        fresh = [prove_one(cache, host, chosen.onnxruntime, chosen.gpu_libs, "row")]
        fresh[0]["row"] = chosen.key
        fresh[0]["rpath_of_torch"] = torch_rpath(host, cache)
        for ort, libs in ALTERNATIVES.get(host["key"], []):
            alt = prove_one(cache, host, ort, libs, "alt-" + ort.split("==")[1], python=PY)
            alt["row"] = None
            fresh.append(alt)
        shutil.rmtree(cache / "envs", ignore_errors=True)
        results = [r for r in results if r["host"] != host["key"]] + fresh
        order = [h["key"] for h in HOSTS]
        results.sort(key=lambda r: (order.index(r["host"]), r["row"] is None))
        record["rows"] = results
        out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return results


def markdown(record: dict) -> str:
    """The recorded evidence as the Markdown tables of docs/onnxruntime-gpu.md."""
    lines = [
        "| onnxruntime-gpu | built with CUDA | provider needs (DT_NEEDED) | opened at run time |",
        "| --- | --- | --- | --- |",
    ]
    groups: list[list[dict]] = []
    for build in record.get("builds", []):
        key = (build["built_with_cuda"], build["needed"], build["opened_at_run_time"])
        if groups and (groups[-1][0]["built_with_cuda"], groups[-1][0]["needed"],
                       groups[-1][0]["opened_at_run_time"]) == key:  # fmt: skip
            groups[-1].append(build)
        else:
            groups.append([build])
    for group in groups:
        first, last = group[0], group[-1]
        versions = first["version"] + ("" if first is last else f" - {last['version']}")
        needed = ", ".join(f"`{n}`" for n in first["needed"])
        opened = ", ".join(f"`{n}`" for n in first["opened_at_run_time"]) or "-"
        lines.append(f"| {versions} | {first['built_with_cuda'] or '-'} | {needed} | {opened} |")
    lines += [
        "",
        "| host | Python | row | installs | resolved (all inside the environment) | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in record.get("rows", []):
        extra = "".join(f" + `{w}` (gpu-libs)" for w in result["gpu_libs"])
        where = sorted({(lib["path"] or "").split("/lib/")[0] for n, lib in
                        result["libraries"].items() if lib["path"]})  # fmt: skip
        found = sum(1 for lib in result["libraries"].values() if lib["path"])
        outcome = "**ok**" if result["ok"] else "fails: " + "; ".join(result["problems"][:4])
        row = result["row"] or "(alternative)"
        lines.append(
            f"| {result['host']} | {result['python']} | {row} | `{result['onnxruntime']}`{extra} "
            f"| {found}/{len(result['libraries'])} from {', '.join(f'`{w}`' for w in where)} "
            f"| {outcome} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the steps asked for and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["survey", "torch", "prove", "all", "markdown"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ortgpu-evidence"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--clean", action="store_true", help="delete wheels and envs at the end")
    parser.add_argument("--only", help="prove only these hosts (comma-separated keys)")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.step == "markdown":
        print(markdown(record), end="")
        return 0
    if args.step in ("survey", "all"):
        record["builds"] = survey(args.cache)
        record["table_vs_survey"] = check_table(record["builds"])
        print("table vs survey:", record["table_vs_survey"] or "agree")
    if args.step in ("torch", "all"):
        record["torch"] = torch_globals(args.cache)
    if args.step in ("prove", "all"):
        only = set(args.only.split(",")) if args.only else None
        record["rows"] = prove(args.cache, record, args.out, only)
    record["python"] = PY
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if args.clean:
        for folder in ("wheels", "nvidia", "torch", "envs", "providers", "torchlib"):
            shutil.rmtree(args.cache / folder, ignore_errors=True)
    failed = [r for r in record.get("rows", []) if r["row"] and not r["ok"]]
    return 1 if failed or record.get("table_vs_survey") else 0


if __name__ == "__main__":
    sys.exit(main())
