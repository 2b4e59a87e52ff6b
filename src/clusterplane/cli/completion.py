"""`clusterplane completion bash|zsh`: a shell completion script generated from the parser.

The script knows, for every command path (`""`, `"clusters"`, `"clusters create"`...), its
subcommands (and the choices of its positional arguments), its options, and which options
take a value with which choices. Its one function walks the words typed so far to find
the path, then completes a value after an option that takes one, else an option after
`-`, else a subcommand; with nothing to offer the shell completes file names. zsh runs
the same function through `bashcompinit` (arrays indexed from 0 there too).

    source <(clusterplane completion bash)    # in ~/.bashrc
    source <(clusterplane completion zsh)     # in ~/.zshrc
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterator

SHELLS = ("bash", "zsh")
Path = tuple[str, ...]

ZSH_PREAMBLE = """\
(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }
autoload -U +X bashcompinit && bashcompinit
"""

FUNCTION = """\
_clusterplane() {
    [ -n "${ZSH_VERSION-}" ] && setopt local_options ksh_arrays
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" path="" word="" values="" i skip=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if ((skip)); then skip=0; continue; fi
        if [[ $word == -* ]]; then
            _clusterplane_values "$path" "$word" >/dev/null && skip=1
            continue
        fi
        if [[ " $(_clusterplane_words "$path") " == *" $word "* ]]; then
            path="${path:+$path }$word"
        fi
    done
    ((COMP_CWORD > 1)) && prev="${COMP_WORDS[COMP_CWORD-1]}"
    if [[ $prev == -* ]] && values="$(_clusterplane_values "$path" "$prev")"; then
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_clusterplane_options "$path")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(_clusterplane_words "$path")" -- "$cur"))
    fi
    return 0
}
complete -o default -F _clusterplane clusterplane
"""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("completion", help="print a shell completion script")
    parser.add_argument("shell", choices=SHELLS)


def walk(
    parser: argparse.ArgumentParser, path: Path = ()
) -> Iterator[tuple[Path, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


def _words(parser: argparse.ArgumentParser) -> list[str]:
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(action.choices)
        elif not action.option_strings and action.choices is not None:
            found += [str(c) for c in action.choices]
    return found


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings]


def _values(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Options that take a value -> their choices ([] when free)."""
    return {
        flag: [str(c) for c in action.choices or ()]
        for action in parser._actions
        if action.option_strings and action.nargs != 0
        for flag in action.option_strings
    }


def _case(name: str, arms: list[tuple[str, list[str]]], key: str, otherwise: str) -> str:
    lines = [f"{name}() {{", f'    case "{key}" in']
    lines += [f"        {shlex.quote(k)}) echo {shlex.quote(' '.join(v))} ;;" for k, v in arms]
    lines += [f"        *) {otherwise} ;;", "    esac", "}"]
    return "\n".join(lines)


def script(root: argparse.ArgumentParser, shell: str) -> str:
    parsers = list(walk(root))
    words = [(" ".join(p), found) for p, parser in parsers if (found := _words(parser))]
    options = [(" ".join(p), found) for p, parser in parsers if (found := _options(parser))]
    values = [
        (f"{' '.join(p)}|{flag}", choices)
        for p, parser in parsers
        for flag, choices in _values(parser).items()
    ]
    parts = [
        f"# {shell} completion for clusterplane (`clusterplane completion {shell}`)",
        ZSH_PREAMBLE if shell == "zsh" else "",
        _case("_clusterplane_words", words, "$1", "return 0"),
        _case("_clusterplane_options", options, "$1", "return 0"),
        _case("_clusterplane_values", values, "$1|$2", "return 1"),
        FUNCTION,
    ]
    return "\n".join(part for part in parts if part)


def run(args: argparse.Namespace, root: argparse.ArgumentParser) -> int:
    sys.stdout.write(script(root, args.shell))
    return 0
