"""The Jinja2 sandbox for prompt templates, with limits on size and work.

Jinja's own SandboxedEnvironment stops templates from reaching Python internals, but a template
from a colleague's spec can still hang or exhaust memory with a few characters: `range(10**9)`,
`"a" * 10**10`, `10 ** (10 ** 10)` (which Jinja even constant-folds while compiling), nested loops,
string doubling in a namespace, exponential macro recursion. This environment makes every such
construct end in one clear SecurityError (a TemplateError), deterministically, without a timer:

- `*`, `**`, `%` and `+` are intercepted (so never folded at compile time) and refuse results
  larger than MAX_VALUE (characters or items) or integers beyond MAX_INT_BITS;
- `range` refuses more than MAX_RANGE items;
- every render has a work budget: loop items (charged with the loop body's constant text), calls,
  filters and the values they touch all draw from MAX_STEPS steps and MAX_RENDER_CHARS characters;
- the rendered text is capped at MAX_OUTPUT_CHARS, templates at MAX_TEMPLATE_CHARS, and
  `include`/`import`/`extends` (no loader) are refused when the template is read.

Call `render_template(env, source, context)` to get a budget; hooks used outside of it (for
example by constant folding at compile time) get a fresh budget per call.
"""
from __future__ import annotations

import math
import re
import string
from contextvars import ContextVar
from functools import lru_cache, wraps
from typing import Any, Callable, Iterator

from jinja2 import Template, TemplateSyntaxError, nodes, pass_context
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment, SecurityError

MAX_TEMPLATE_CHARS = 65_536
MAX_RANGE = 100_000
MAX_VALUE = 1_000_000  # characters of one text, or items of one list/dict, made inside a template
MAX_INT_BITS = 4_096
MAX_OUTPUT_CHARS = 1_000_000
MAX_STEPS = 250_000  # per render: loop items, calls, filters, list items measured
MAX_RENDER_CHARS = 20_000_000  # per render: characters made by outputs, filters and operators


class TemplateLimitError(SecurityError):
    """A template exceeded a size or work limit; the message says which and what to do."""


class _Budget:
    __slots__ = ("steps", "chars")

    def __init__(self) -> None:
        self.steps, self.chars = MAX_STEPS, MAX_RENDER_CHARS

    def charge(self, steps: int, chars: int = 0) -> None:
        self.steps -= steps
        self.chars -= chars
        if self.steps < 0:
            raise TemplateLimitError(f"the template does too much work for one row (more than {MAX_STEPS:,} steps of "
                                     "loops, calls and filters); make it simpler")
        if self.chars < 0:
            raise TemplateLimitError(f"the template makes too much text for one row (more than {MAX_RENDER_CHARS:,} "
                                     "characters); make it simpler")


_BUDGET: ContextVar[_Budget | None] = ContextVar("synthloop_template_budget", default=None)


def _budget() -> _Budget:
    return _BUDGET.get() or _Budget()


def _measure(value: Any, budget: _Budget | None = None) -> int:
    """Characters plus items in `value`, counting shared parts every time they appear (so a list
    that contains itself twice, doubled 40 times, counts 2**40), stopping just past MAX_VALUE;
    the walk is charged to the budget."""
    budget = budget or _budget()
    total, steps, stack = 0, 0, [value]
    while stack and total <= MAX_VALUE:
        v = stack.pop()
        steps += 1
        if isinstance(v, (str, bytes)):
            total += len(v)
        elif isinstance(v, (list, tuple, set, frozenset, dict)):
            total += 1
            if len(v) > MAX_VALUE:
                total += len(v)
                continue
            stack.extend(v.values() if isinstance(v, dict) else v)
            if isinstance(v, dict):
                stack.extend(v.keys())
        else:  # numbers, ranges (lazy: their items are charged when iterated), namespaces, ...
            total += 1
    budget.charge(steps, total if isinstance(value, str) else 0)
    return total


def _check_size(value: Any, what: str = "a value") -> Any:
    size = _measure(value)
    if size > MAX_VALUE:
        raise TemplateLimitError(f"{what} would hold more than {MAX_VALUE:,} characters or items")
    return value


def _int_arg(value: Any, what: str, limit: int = MAX_VALUE) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
        raise TemplateLimitError(f"{what} {value} is too large (at most {limit:,})")


# -- operators --------------------------------------------------------------------------------
_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")


def _check_printf(fmt: str, args: Any) -> None:
    """`'%0999999999d' % 1` builds a huge text: widths and precisions stay within MAX_VALUE."""
    for width, precision in _PRINTF_WIDTH.findall(fmt):
        for part in (width, precision):
            if part == "*":
                for a in args if isinstance(args, tuple) else (args,):
                    _int_arg(a, "a '*' width")
            elif part and len(part) > 7 or (part and int(part) > MAX_VALUE):
                raise TemplateLimitError(f"the format width {part} is too large (at most {MAX_VALUE:,})")


def _check_format_spec(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`'{:>999999999}'.format(1)`: widths in str.format specs stay within MAX_VALUE."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will raise the same error
    for _, _, spec, _ in parsed:
        if not spec:
            continue
        if "{" in spec:  # a width taken from the arguments
            for a in (*args, *kwargs.values()):
                _int_arg(a, "a format width")
        for number in re.findall(r"\d+", spec):
            if len(number) > 7 or int(number) > MAX_VALUE:
                raise TemplateLimitError(f"the format width {number} is too large (at most {MAX_VALUE:,})")


def _sized(x: Any) -> bool:
    return isinstance(x, (str, list, tuple))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _binop(op: str, left: Any, right: Any, fn: Callable[[Any, Any], Any]) -> Any:
    budget = _budget()
    budget.charge(1)
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if _sized(seq) and isinstance(n, int):  # measured: [text] * n repeats the whole text n times
                if n > 1 and _measure(seq, budget) * n > MAX_VALUE:
                    raise TemplateLimitError(f"repeating a value {n:,} times would make more than {MAX_VALUE:,} "
                                             "characters or items")
        if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"the product is too large (more than {MAX_INT_BITS:,} bits)")
    elif op == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            if right * math.log2(abs(left)) > MAX_INT_BITS:
                raise TemplateLimitError(f"{left} ** {right} is too large (more than {MAX_INT_BITS:,} bits)")
    elif op == "%":
        if isinstance(left, str):
            _check_printf(left, right)
    elif op == "+":
        if _sized(left) and _sized(right) and len(left) + len(right) > MAX_VALUE:
            raise TemplateLimitError(f"joining these values would make more than {MAX_VALUE:,} characters or items")
    try:
        out = fn(left, right)
    except OverflowError:
        raise TemplateLimitError(f"the result of '{op}' is too large") from None
    if isinstance(out, str):
        budget.charge(0, len(out))
    return out


# -- range, loops, filters ----------------------------------------------------------------------
def _range(*args: Any) -> range:
    """`range` with at most MAX_RANGE items (Jinja's own raises a bare OverflowError)."""
    for a in args:
        _int_arg(a, "a range bound", 2**62)
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise TemplateLimitError(f"range({', '.join(map(str, args))}) has {len(rng):,} items; at most {MAX_RANGE:,} "
                                 "are allowed")
    return rng


class _Counted:
    """An iterable whose items are charged to the render's budget (one step plus the constant text
    of the loop body per item), so nested loops cannot run or write without end."""

    __slots__ = ("iterable", "cost")

    def __init__(self, iterable: Any, cost: int) -> None:
        self.iterable, self.cost = iterable, cost

    def __iter__(self) -> Iterator[Any]:
        budget = _budget()
        for item in self.iterable:
            budget.charge(1, self.cost)
            yield item

    def __len__(self) -> int:
        return len(self.iterable)


@pass_context
def _loop_filter(context: Any, value: Any, cost: int = 0) -> _Counted:
    return _Counted(value, cost)


@pass_context
def _value_filter(context: Any, value: Any) -> Any:
    return _check_size(value, "a variable")


@pass_context
def _cost_filter(context: Any, value: Any) -> Any:
    _measure(value)
    return value


def _filter_args(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Arguments that make one filter call produce a huge result from a small input."""
    value = args[0] if args else None
    rest = args[1:]

    def arg(i: int, key: str, default: Any = None) -> Any:
        return rest[i] if len(rest) > i else kwargs.get(key, default)

    if name == "center":
        _int_arg(arg(0, "width", 80), "a width")
    elif name == "indent":
        width = arg(0, "width", 4)
        lines = str(value).count("\n") + 1
        size = len(width) if isinstance(width, str) else width if _is_int(width) else 0
        if size * lines > MAX_VALUE:
            raise TemplateLimitError(f"indenting {lines:,} lines by {size:,} would make more than {MAX_VALUE:,} characters")
    elif name == "format" and isinstance(value, str):
        _check_printf(value, tuple(rest) or tuple(kwargs.values()))
    elif name == "replace":
        _check_replace(str(value), arg(0, "old", ""), arg(1, "new", ""), arg(2, "count"))
    elif name == "join":
        sep = arg(0, "d", "")
        if isinstance(sep, str) and hasattr(value, "__len__") and len(sep) * max(len(value) - 1, 0) > MAX_VALUE:
            raise TemplateLimitError(f"the joined text would hold more than {MAX_VALUE:,} characters")
    elif name in ("slice", "batch"):
        _int_arg(arg(0, "slices" if name == "slice" else "linecount"), f"the {name} count", MAX_RANGE)
    elif name == "sum":
        start = arg(1, "start", 0)
        if not isinstance(start, (int, float)):
            raise TemplateLimitError("'sum' adds numbers only (start must be a number)")
    elif name == "truncate":
        _int_arg(arg(0, "length", 255), "a length", 2**62)
    elif name == "wordwrap":
        _int_arg(arg(0, "width", 79), "a width", 2**62)


def _check_replace(s: str, old: Any, new: Any, count: Any) -> None:
    if not isinstance(old, str) or not isinstance(new, str):
        return
    hits = s.count(old) if old else len(s) + 1
    if _is_int(count) and count >= 0:
        hits = min(hits, count)
    if len(s) + hits * len(new) > MAX_VALUE:
        raise TemplateLimitError(f"the replaced text would hold more than {MAX_VALUE:,} characters")


def _guard(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter or test that charges the budget, refuses growth arguments and oversized results."""
    skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0

    @wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _budget().charge(1)
        for a in (*args[skip:], *kwargs.values()):
            _check_size(a, f"a value given to '{name}'")
        _filter_args(name, args[skip:], kwargs)
        out = fn(*args, **kwargs)
        if isinstance(out, (str, list, tuple, dict)):
            _check_size(out, f"the result of '{name}'")
            if isinstance(out, str):
                _budget().charge(0, len(out))
        return out

    return guarded


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` output: measured (a list that shares itself cannot print 2**40 items)."""
    if isinstance(value, str):
        _budget().charge(1, len(value))
        if len(value) > MAX_OUTPUT_CHARS:
            raise TemplateLimitError(f"an output value holds {len(value):,} characters; at most {MAX_OUTPUT_CHARS:,}")
        return value
    return _check_size(value, "an output value")


# -- method calls --------------------------------------------------------------------------------
def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """String methods whose arguments set the size of the result."""
    target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner = getattr(target, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(target, "__name__", "")
    first = args[0] if args else next(iter(kwargs.values()), None)
    if name in ("ljust", "rjust", "center", "zfill"):
        _int_arg(first, "a width")
    elif name == "expandtabs":
        size = first if _is_int(first) else 8
        if len(owner) + owner.count("\t") * max(size, 0) > MAX_VALUE:
            raise TemplateLimitError(f"expanding tabs would make more than {MAX_VALUE:,} characters")
    elif name == "replace":
        _check_replace(owner, args[0] if args else None, args[1] if len(args) > 1 else None,
                       args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "join" and hasattr(first, "__len__"):
        if len(owner) * max(len(first) - 1, 0) > MAX_VALUE:
            raise TemplateLimitError(f"the joined text would hold more than {MAX_VALUE:,} characters")
    elif name in ("format", "format_map"):
        _check_format_spec(owner, args, kwargs)
    elif name == "translate" and isinstance(first, dict):
        longest = max((len(v) for v in first.values() if isinstance(v, str)), default=1)
        if len(owner) * longest > MAX_VALUE:
            raise TemplateLimitError(f"the translated text would hold more than {MAX_VALUE:,} characters")


# -- the environment ----------------------------------------------------------------------------
def _body_text(node: nodes.Node) -> int:
    """Characters of constant text in a loop body: what each iteration writes without a hook."""
    total = sum(len(n.data) for n in node.find_all(nodes.TemplateData))
    return total + sum(len(n.value) for n in node.find_all(nodes.Const) if isinstance(n.value, str))


def _wrap(node: nodes.Expr, name: str, *args: Any) -> nodes.Filter:
    f = nodes.Filter(node, name, [nodes.Const(a) for a in args], [], None, None)
    return f.set_lineno(node.lineno) if node.lineno else f


MAX_TEMPLATE_DEPTH = 100
_TOO_DEEP = (f"the template is nested too deeply (at most {MAX_TEMPLATE_DEPTH} levels; a chain like a + b + c + ... "
             "takes one level per operator)")


def _check_depth(tree: nodes.Node, name: str | None, filename: str | None) -> None:
    """Jinja's optimizer and code generator recurse over the tree; refuse deep trees first, without recursion."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TEMPLATE_DEPTH:
            raise TemplateSyntaxError(_TOO_DEEP, getattr(node, "lineno", 1) or 1, name, filename)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


def _harden(tree: nodes.Template) -> nodes.Template:
    """Route loops, assignments, comparisons, slices and `~` through the budgeted filters."""
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        what = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from ... import",
                nodes.Extends: "extends"}[type(node)]
        raise TemplateSyntaxError(f"'{what}' is not available in prompt templates; write the text inline",
                                  node.lineno, None, None)
    for node in list(tree.find_all(nodes.For)):
        node.iter = _wrap(node.iter, "_sl_loop", _body_text(nodes.Scope(node.body)) + 1)
    for node in list(tree.find_all(nodes.Assign)):
        node.node = _wrap(node.node, "_sl_value")
    for node in list(tree.find_all(nodes.With)):
        node.values = [_wrap(v, "_sl_value") for v in node.values]
    for node in list(tree.find_all(nodes.Compare)):
        node.expr = _wrap(node.expr, "_sl_cost")
        for operand in node.ops:
            operand.expr = _wrap(operand.expr, "_sl_cost")
    for node in list(tree.find_all(nodes.Concat)):
        node.nodes = [_wrap(n, "_sl_cost") for n in node.nodes]
    for node in list(tree.find_all(nodes.Getitem)):
        if isinstance(node.arg, nodes.Slice):
            node.node = _wrap(node.node, "_sl_cost")
    return tree


class PromptSandbox(SandboxedEnvironment):
    """SandboxedEnvironment with size and work limits (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("finalize", _finalize)
        super().__init__(*args, **kwargs)
        self.globals["range"] = _range
        self.filters = {name: _guard(name, fn) for name, fn in self.filters.items()}
        self.tests = {name: _guard(name, fn) for name, fn in self.tests.items()}
        self.filters.update(_sl_loop=_loop_filter, _sl_value=_value_filter, _sl_cost=_cost_filter)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        if len(source) > MAX_TEMPLATE_CHARS:
            raise TemplateSyntaxError(f"the template is {len(source):,} characters long; at most "
                                      f"{MAX_TEMPLATE_CHARS:,} are allowed", 1, name, filename)
        try:
            tree = super()._parse(source, name, filename)
        except (RecursionError, MemoryError):
            raise TemplateSyntaxError(_TOO_DEEP, 1, name, filename) from None
        _check_depth(tree, name, filename)  # the compiler recurses over the tree
        return _harden(tree)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return _binop(operator, left, right, self.binop_table[operator])

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget().charge(1)
        for a in (*args, *kwargs.values()):
            _check_size(a, "an argument")
        _check_call(__obj, args, kwargs)
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            cost = getattr(getattr(__obj, "_iterable", None), "cost", 1)
            args = (_Counted(args[0], cost),) + args[1:]
        out = super().call(__context, __obj, *args, **kwargs)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (list, dict, set)):  # append/extend/update grow a value in place
            _check_size(owner, "a list or dict")
        if isinstance(out, (str, list, tuple, dict)):
            _check_size(out, "the result of a call")
        return out


@lru_cache(maxsize=256)
def _compiled(env: PromptSandbox, source: str) -> Template:
    return env.from_string(source)


def compile_template(env: SandboxedEnvironment, source: str) -> Template:
    """A compiled template (cached: a prompt renders once per row); TemplateSyntaxError when it
    cannot be read or breaks a limit."""
    if isinstance(env, PromptSandbox):
        return _compiled(env, source)
    return env.from_string(source)


def render_template(env: SandboxedEnvironment, source: str, context: dict[str, Any]) -> str:
    """Render `source` with a fresh work budget and at most MAX_OUTPUT_CHARS characters.
    Raises TemplateError (SecurityError for a limit), never RecursionError/MemoryError."""
    token = _BUDGET.set(_Budget())
    try:
        template = compile_template(env, source)
        parts: list[str] = []
        size = 0
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimitError(f"the rendered prompt is longer than {MAX_OUTPUT_CHARS:,} characters")
            parts.append(chunk)
        return "".join(parts)
    except RecursionError:
        raise TemplateLimitError("the template recurses too deeply (a macro or recursive loop that does not end?)") from None
    except MemoryError:
        raise TemplateLimitError("the template needs too much memory") from None
    except OverflowError as exc:
        raise TemplateLimitError(f"a number in the template is too large ({exc})") from None
    finally:
        _BUDGET.reset(token)
