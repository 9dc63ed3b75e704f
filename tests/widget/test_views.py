"""The page and the widget's files are served, and the page needs no inline script or style
(so a strict Content-Security-Policy can be applied to it)."""

from __future__ import annotations

from html.parser import HTMLParser


class _Inline(HTMLParser):
    """Collects everything a CSP without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[dict] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.problems += [f"{tag}[{name}]" for name in attrs if name.startswith("on")]
        if "style" in attrs:
            self.problems.append(f"{tag}[style]")
        if tag == "style":
            self.problems.append("<style>")
        if tag == "script":
            self.scripts.append(attrs)
            self._in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append("inline <script>")


def test_chat_page_loads_widget_from_a_file_with_nothing_inline(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "no-cache" in response.headers["Cache-Control"]
    parser = _Inline()
    parser.feed(response.get_data(as_text=True))
    assert parser.problems == []
    assert [s.get("src") for s in parser.scripts] == ["widget.js"]
    assert parser.scripts[0].get("data-mount") == "#chat"


def test_widget_script_and_styles_are_served_with_their_types(client):
    js = client.get("/widget.js")
    css = client.get("/widget.css")
    page_css = client.get("/chat-page.css")
    assert js.status_code == css.status_code == page_css.status_code == 200
    assert js.mimetype in {"text/javascript", "application/javascript"}
    assert css.mimetype == page_css.mimetype == "text/css"
    assert js.cache_control.max_age == 300
    assert b"textContent" in js.data and b"innerHTML" not in js.data
    conditional = client.get("/widget.js", headers={"If-None-Match": js.headers["ETag"]})
    assert conditional.status_code == 304


def test_other_paths_are_not_served_from_the_static_folder(client):
    for path in ("/chat.html", "/static/widget.js", "/widget.js/../__init__.py", "/x.js"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"] == "not_found"
