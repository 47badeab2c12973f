"""The few HTML pages the guard serves itself: self-contained (no scripts, no external styles, no data)."""

from __future__ import annotations

from html import escape

_STYLE = ("body{font-family:system-ui,sans-serif;background:#111;color:#eee;display:flex;align-items:center;"
          "justify-content:center;height:100vh;margin:0}main{max-width:24rem;width:100%}"
          "label,input,button{display:block;width:100%;box-sizing:border-box;margin:.4rem 0}"
          "input,button{padding:.6rem;font-size:1rem}.msg{color:#f88}h1{font-size:1.4rem}")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style></head>'
            f"<body><main>{body}</main></body></html>")


def login_page(csrf: str, next_path: str, message: str | None = None) -> str:
    """The login form; ``csrf`` is the login form's double-submit token."""
    note = f'<p class="msg" role="alert">{escape(message)}</p>' if message else ""
    return _page("facwatch — sign in", (
        f"<h1>facwatch — sign in</h1>{note}"
        '<form method="post" action="/login" autocomplete="on">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<label for="username">User name</label>'
        '<input id="username" name="username" autocomplete="username" required autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'))


def logout_page(csrf: str, user: str) -> str:
    """A one-button form: logging out is a POST, so another site cannot log a user out by a link."""
    return _page("facwatch — sign out", (
        f"<h1>Signed in as {escape(user)}</h1>"
        '<form method="post" action="/logout">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        '<button type="submit">Sign out</button></form>'))


def kiosk_refused_page(reason: str) -> str:
    """What a wall screen shows when its token no longer works: never a login form."""
    return _page("facwatch — kiosk token revoked", (
        "<h1>kiosk token revoked — ask an admin</h1>"
        f"<p>This wall screen's token does not work ({escape(reason)}). An admin creates a new one with "
        "<code>facwatch tokens create --name …</code> and opens the wall URL with it once.</p>"))


def kiosk_out_of_scope_page() -> str:
    """A wall screen asked for a page outside the wall views."""
    return _page("facwatch — not on a wall screen",
                 "<h1>not available on a wall screen</h1><p>Kiosk tokens show the wall views only.</p>")
