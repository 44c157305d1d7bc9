"""``fitlab completion {bash,zsh}``: a shell completion script, generated from the parser.

The script is written from the same argparse parser that ``fitlab`` runs, so it never
falls behind the commands: sub-commands, every option of each, the values of options with
a fixed set of choices (``--time {log,linear}``), estimator names for ``--estimator``
and ``--estimators``, and file names for the rest. No dependency: a small walker over
argparse's actions.

Install (once)::

    fitlab completion bash > ~/.local/share/bash-completion/completions/fitlab
    fitlab completion zsh > "${fpath[1]}/_fitlab"      # then restart zsh

or for the current shell only: ``source <(fitlab completion bash)``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

from fitlab.cli.common import command

__all__ = ["add_parser", "cmd_completion", "bash_script", "zsh_script", "walk", "SHELLS"]

SHELLS = ("bash", "zsh")
#: Metavars of options whose values are paths (positional arguments always are).
PATH_METAVARS = ("FILE", "DIR", "SCENARIO")
#: Options whose values are estimator names.
ESTIMATOR_OPTIONS = ("--estimator", "--estimators")


def add_parser(sub) -> None:
    s = command(sub, "completion", "print a bash or zsh completion script for fitlab",
                ["completion bash > ~/.local/share/bash-completion/completions/fitlab",
                 'completion zsh > "${fpath[1]}/_fitlab"',
                 "completion bash  # then: source <(fitlab completion bash)"])
    s.add_argument("shell", choices=SHELLS,
                   help="the shell to complete in (e.g. bash; one of %(choices)s)")
    s.set_defaults(func=cmd_completion)


def cmd_completion(args) -> int:
    """Print the script for ``args.shell``."""
    from fitlab.cli import build_parser

    parser = build_parser()
    print(bash_script(parser) if args.shell == "bash" else zsh_script(parser), end="")
    return 0


@dataclass
class Option:
    """One option of a command, as completion needs it."""

    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str] = field(default_factory=list)
    kind: str = "file"  # what the value is: "file", "choice", "estimator", "none" (a number)


@dataclass
class Command:
    """A command (``""`` for fitlab itself): its help, options and positional arguments."""

    name: str
    help: str
    options: list[Option]
    positionals: list[Option]


def walk(parser: argparse.ArgumentParser) -> list[Command]:
    """``fitlab`` itself, then every sub-command, with their options."""
    out = [Command("", parser.description or "", *_arguments(parser))]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append(Command(name, helps.get(name, ""), *_arguments(sub)))
    return out


def _arguments(parser: argparse.ArgumentParser) -> tuple[list[Option], list[Option]]:
    options, positionals = [], []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            continue
        help_ = _short(a.help or "")
        choices = [str(c) for c in a.choices] if a.choices else _metavar_choices(a.metavar)
        takes = a.nargs != 0
        if not takes:
            kind = "none"
        elif choices:
            kind = "choice"
        elif any(f in ESTIMATOR_OPTIONS for f in a.option_strings):
            kind = "estimator"
        elif not a.option_strings or (isinstance(a.metavar, str)
                                      and a.metavar in PATH_METAVARS):
            kind = "file"
        else:  # numbers, names, addresses: nothing to offer
            kind = "none"
        opt = Option(list(a.option_strings) or [a.dest], help_, takes, choices, kind)
        (options if a.option_strings else positionals).append(opt)
    return options, positionals


def _metavar_choices(metavar) -> list[str]:
    """``{log,linear}`` -> ``["log", "linear"]`` (choices checked elsewhere, shown here).

    A tuple metavar (an option taking several values, e.g. ``LOW HIGH``) offers none."""
    if not isinstance(metavar, str):
        return []
    m = re.fullmatch(r"\{([^{}]+)\}", metavar)
    return m.group(1).split(",") if m else []


def _short(text: str) -> str:
    """The help's first clause: what the option is, without defaults and examples."""
    return re.split(r" \(default|; e\.g\.| \(e\.g\.", text)[0].strip()


def _estimator_names() -> list[str]:
    from models import ESTIMATORS

    return sorted(ESTIMATORS)


# -- bash -------------------------------------------------------------------------------------
def bash_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion script (``complete -F _fitlab fitlab``)."""
    commands = walk(parser)
    top, subs = commands[0], commands[1:]
    estimators = " ".join(_estimator_names())
    lines = [
        "# bash completion for fitlab, generated by `fitlab completion bash`",
        "_fitlab() {",
        '    local cur prev cmd i',
        '    cur="${COMP_WORDS[COMP_CWORD]}"',
        '    prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    cmd=""',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break ;; esac',
        "    done",
        '    case "$cmd" in',
        '    "")',
        '        COMPREPLY=($(compgen -W "{}" -- "$cur"))'.format(
            " ".join([c.name for c in subs] + [f for o in top.options for f in o.flags])),
        "        return ;;",
    ]
    for c in subs:
        lines.append(f"    {c.name})")
        values = [o for o in c.options if o.takes_value]
        if values:
            lines.append('        case "$prev" in')
            for o in values:
                lines.append(f"        {'|'.join(o.flags)})")
                lines.append("            " + _bash_value(o, estimators))
                lines.append("            return ;;")
            lines.append("        esac")
        flags = " ".join(f for o in c.options for f in o.flags)
        lines.append('        if [[ "$cur" == -* ]]; then')
        lines.append(f'            COMPREPLY=($(compgen -W "{flags}" -- "$cur"))')
        pos = c.positionals[0] if c.positionals else None
        if pos is not None:
            lines.append("        else")
            lines.append("            " + _bash_value(pos, estimators))
        lines.append("        fi")
        lines.append("        return ;;")
    lines += ["    esac", "}", "complete -o filenames -F _fitlab fitlab", ""]
    return "\n".join(lines)


def _bash_value(o: Option, estimators: str) -> str:
    if o.kind == "choice":
        return f'COMPREPLY=($(compgen -W "{" ".join(o.choices)}" -- "$cur"))'
    if o.kind == "estimator":
        return f'COMPREPLY=($(compgen -W "{estimators}" -- "$cur"))'
    if o.kind == "none":
        return "COMPREPLY=()"
    return 'COMPREPLY=($(compgen -f -- "$cur"))'


# -- zsh --------------------------------------------------------------------------------------
def zsh_script(parser: argparse.ArgumentParser) -> str:
    """A zsh completion function (``#compdef fitlab``), for ``fpath`` or ``source``."""
    commands = walk(parser)
    top, subs = commands[0], commands[1:]
    estimators = " ".join(_estimator_names())
    lines = [
        "#compdef fitlab",
        "# zsh completion for fitlab, generated by `fitlab completion zsh`",
        "_fitlab() {",
        "    local curcontext=$curcontext state line",
        "    typeset -A opt_args",
        "    _arguments -C \\",
    ]
    for o in top.options:
        lines.append(f"        {_zsh_option(o, estimators)} \\")
    lines += ["        '1: :->command' \\", "        '*:: :->args'",
              "    case $state in", "    command)", "        local -a commands",
              "        commands=("]
    for c in subs:
        lines.append(f"            {_q(c.name + ':' + _zsh_text(c.help))}")
    lines += ["        )", "        _describe -t commands 'fitlab command' commands ;;",
              "    args)", "        case $line[1] in"]
    for c in subs:
        lines.append(f"        {c.name})")
        lines.append("            _arguments \\")
        specs = [_zsh_option(o, estimators) for o in c.options]
        specs += [_q(f"{i + 1}:{_zsh_text(p.help)}:{_zsh_action(p, estimators)}")
                  for i, p in enumerate(c.positionals)]
        lines += [f"                {s} \\" for s in specs[:-1]]
        lines.append(f"                {specs[-1]} ;;")
    lines += ["        esac ;;", "    esac", "}", "",
              'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then',
              '    _fitlab "$@"', "else", "    compdef _fitlab fitlab", "fi", ""]
    return "\n".join(lines)


def _zsh_option(o: Option, estimators: str) -> str:
    text = _zsh_text(o.help)
    exclusive = "(- *)" if {"--help", "--version"} & set(o.flags) else ""
    if len(o.flags) > 1:
        names = "{" + ",".join(o.flags) + "}"
        head = _q(f"({' '.join(o.flags)})") if not exclusive else _q(exclusive)
    else:
        names, head = o.flags[0], _q(exclusive) if exclusive else ""
    tail = f"[{text}]"
    if o.takes_value:
        tail += f":{o.flags[-1].lstrip('-')}:{_zsh_action(o, estimators)}"
    return f"{head}{names}{_q(tail)}"


def _zsh_action(o: Option, estimators: str) -> str:
    if o.kind == "choice":
        return "(" + " ".join(o.choices) + ")"
    if o.kind == "estimator":
        return f"({estimators})"
    if o.kind == "none":
        return " "
    return "_files"


def _zsh_text(text: str) -> str:
    """Help text safe inside ``[...]`` and ``name:description`` of zsh specs."""
    return text.replace("\\", "").replace("[", "(").replace("]", ")").replace(":", " -")


def _q(text: str) -> str:
    """Single-quoted for the shell."""
    return "'" + text.replace("'", "'\\''") + "'"
