"""Run Python code in a subprocess where some modules cannot be imported.

`sys.modules[name] = None` makes every later `import name` raise ImportError,
exactly as if the package were not installed. It is done in a child process:
in this one, already-imported submodules would still be found, and every other
test would lose the package too.
"""
import subprocess
import sys

CLI = "from vtalign.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def run_without(modules, script: str, *args: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `script` (with `sys` imported and `args` in sys.argv[1:]) after blocking `modules`."""
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run([sys.executable, "-c", "import sys\n" + block + script, *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)
