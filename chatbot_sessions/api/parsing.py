"""How request bodies become view arguments: webargs' Flask parser, with every JSON failure a 400.

webargs turns only ``JSONDecodeError`` into its 400 ``{"json": [...]}`` error (which
``http_errors.py`` renders as ``invalid_json``). Python's decoder also fails in two other ways on
input a client fully controls, and both used to leave as a 500:

- ``RecursionError``: nesting deeper than the interpreter's recursion limit, such as
  ``[[[[...`` a thousand levels down, closed or not;
- ``ValueError``: an integer literal longer than ``sys.get_int_max_str_digits()`` (4300
  digits), which Python refuses to convert (CVE-2020-10735).

Nesting is not bounded separately: ``MAX_CONTENT_LENGTH`` already bounds the decoder's work,
the C decoder stops cleanly at the recursion limit, and whatever shallower nesting does parse
is rejected by the schema (a question must be a string) before anything reaches the store.
"""

from __future__ import annotations

from typing import Any

import flask
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, answering 400 ``invalid_json`` for any body the decoder refuses."""

    def _raw_load_json(self, req: flask.Request) -> Any:
        """webargs' read of the body, skipping the ``Content-Type`` parse for the exact
        ``application/json`` the widget and most clients send: werkzeug's ``mimetype``
        splits the header's parameters out first (about 15,000 instructions). Any other
        value, parameters included, goes through webargs as before."""
        if req.environ.get("CONTENT_TYPE") == "application/json":
            return core.parse_json(req.get_data(cache=True))
        return super()._raw_load_json(req)

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        """Parse as webargs does; too deep or too long a number is invalid JSON too."""
        try:
            return super().load_json(req, schema)
        except (RecursionError, ValueError) as exc:  # JSONDecodeError is handled by super()
            self._handle_invalid_json_error(exc, req)
