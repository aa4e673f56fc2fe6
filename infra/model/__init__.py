"""The stack model and its loader."""

from infra.model.errors import StackError
from infra.model.loader import list_stacks, load_stack, parse_stack, stack_file, state_root
from infra.model.stack import StackModel

__all__ = ["StackError", "StackModel", "list_stacks", "load_stack", "parse_stack", "stack_file", "state_root"]
