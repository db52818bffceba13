"""Tasks, one plugin module each: what is predicted and how it is scored; importing the package registers
them all in TASKS."""

from harness.tasks import classification, detection  # noqa: F401
from harness.tasks.base import TASKS, Task, task_named, task_of  # noqa: F401
