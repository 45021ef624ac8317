"""Build step: the wheel carries the repository's ``cfg/`` and ``data/`` folders as
``darknet_py/share/cfg`` and ``darknet_py/share/data`` (read by ``darknet_py.resources``), so
that they stay where the tests, the README and a source checkout use them. Metadata: setup.cfg."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHARED_FOLDERS = ("cfg", "data")


class BuildWithShare(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout itself
            return
        here = Path(__file__).resolve().parent
        for folder in SHARED_FOLDERS:
            target = Path(self.build_lib) / "darknet_py" / "share" / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(here / folder, target)


setup(cmdclass={"build_py": BuildWithShare})
