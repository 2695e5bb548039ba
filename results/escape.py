"""Text made safe for LaTeX and HTML, shared by the LaTeX and HTML writers and the control
analysis they both render (kept here so that none of them imports another)."""
from __future__ import annotations

import html as _html
import unicodedata

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%", "#": r"\#",
    "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "[": "{[}", "]": "{]}", "-": "-{}", '"': r"\textquotedbl{}",
    "'": r"\textquotesingle{}", "`": r"\textasciigrave{}",
}
#: non-ASCII characters with a text-mode command (anything else is reduced to ASCII or shown as ?)
_UNICODE = {
    "±": r"\textpm{}", "×": r"\texttimes{}", "÷": r"\textdiv{}", "–": "--", "—": "---", "…": r"\dots{}",
    "µ": r"\textmu{}", "°": r"\textdegree{}", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "→": r"$\rightarrow$",
    "≤": r"$\leq$", "≥": r"$\geq$", "α": r"$\alpha$", "β": r"$\beta$", "γ": r"$\gamma$", "λ": r"$\lambda$",
}

def latex_escape(text) -> str:
    """``text`` as LaTeX that typesets it literally (text mode): every special character is
    escaped, whitespace (newlines included) is collapsed, and non-ASCII characters become a
    command, their ASCII base letter (é -> e) or ``?``, so any string compiles with pdflatex."""
    out = []
    for ch in " ".join(str(text).split()):
        if ch in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[ch])
        elif ord(ch) < 128:
            out.append(ch if ch.isprintable() else "?")
        elif ch in _UNICODE:
            out.append(_UNICODE[ch])
        else:
            base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(latex_escape(base) if base else "?")
    return "".join(out)


def esc(text) -> str:
    return _html.escape(" ".join(str(text).split()), quote=True)
