"""A marshmallow ``Schema`` whose ``dump`` and ``load`` give marshmallow's answers in fewer steps.

**Dump.** ``Schema.dump`` reaches each field's value through four calls (``Field.serialize``,
``Field.get_value``, ``Schema.get_attribute``, ``utils.get_value``) before the field
converts it (``Field._serialize``). On our small answers that access cost more than the
conversion: dumping the three fields of a validate answer took about 37,000 instructions
under callgrind, a twentieth of the whole request. ``LeanSchema`` works out once per
schema instance where each field's value lives, reads it the way ``utils.get_value``
does, and hands it to the field's own ``_serialize``: the conversion, defaults and
skipping of missing values stay marshmallow's. A value that conversion would return
unchanged is not handed over: a ``str`` for a ``String``, an ``int`` for an ``Integer``,
a ``float`` for a ``Float`` (unless ``as_string``), anything for a field that keeps
``Field._serialize`` (``Boolean``, ``Raw``). Anything the shortcut does not cover goes
the usual way: a schema with ``pre_dump`` or ``post_dump`` hooks or dumping ``many``, a
schema that overrides ``get_attribute``, and a field class that overrides ``serialize``
or ``get_value`` (``fields.Function`` reads no attribute: it is asked through
``serialize``).

**Load.** ``Schema.load`` prepares for every case on every call (an error store, partial
loading, a closure per field, unknown keys, hooks). For a plain dict into a schema with no
hooks that drops unknown keys (``EXCLUDE``), each field's ``deserialize`` (which checks
required, converts and validates) is all there is to it; that is what the shortcut calls.
At the first field that refuses its value, the whole load runs again marshmallow's way,
so the error and its messages are exactly marshmallow's (a refused request costs a
little more; an accepted one, about half).

``tests/test_lean_schema.py`` checks both against marshmallow on generated input, for
every schema in ``schemas.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing
from marshmallow.decorators import (
    POST_DUMP,
    POST_LOAD,
    PRE_DUMP,
    PRE_LOAD,
    VALIDATES,
    VALIDATES_SCHEMA,
)
from marshmallow.utils import set_value

#: One field's way to its value: the key in the answer, the field's name, the field, the
#: attribute path (None when the field must be asked through ``serialize``), and the type
#: of value its ``_serialize`` would hand back unchanged (``object``: any; None: no such).
_Step = tuple[str, str, fields.Field, tuple[str, ...] | None, type | None]

#: Field classes whose ``_serialize`` returns a value of this exact type as it is: ``str(s)``,
#: ``int(n)`` and ``float(x)`` of one give it back (numbers only when not ``as_string``).
_KEEPS = {fields.String: str, fields.Integer: int, fields.Float: float}


def _value_for_key(obj: Any, key: str) -> Any:
    """``marshmallow.utils._get_value_for_key`` with ``missing`` as the default: an item if
    ``obj`` has one under ``key``, else the attribute."""
    if type(obj) is dict:  # the common case, without the exception of a missing key
        return obj[key] if key in obj else getattr(obj, key, missing)
    if not hasattr(obj, "__getitem__"):
        return getattr(obj, key, missing)
    try:
        return obj[key]
    except (KeyError, IndexError, TypeError, AttributeError):
        return getattr(obj, key, missing)


def _kept_type(field: fields.Field) -> type | None:
    """The type of value ``field._serialize`` returns unchanged, if there is one: any value
    for a field class that keeps marshmallow's own ``_serialize`` (``Boolean``, ``Raw``)."""
    kind = type(field)
    if kind._serialize is fields.Field._serialize:
        return object
    if getattr(field, "as_string", False):
        return None
    return _KEEPS.get(kind)


def _reads_its_attribute(field: fields.Field) -> bool:
    """Whether ``field`` gets its value as ``Field.serialize`` does, so it can be read for it."""
    kind = type(field)
    return (
        field._CHECK_ATTRIBUTE
        and kind.serialize is fields.Field.serialize
        and kind.get_value is fields.Field.get_value
    )


class LeanSchema(Schema):
    """``Schema`` with the same ``dump`` and ``load`` results, in fewer steps (module docstring)."""

    _lean_plan: list[_Step] | None = None
    _lean_load_plan: _LoadPlan | None = None

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        many = self.many if many is None else bool(many)
        if many or self._hooks[PRE_DUMP] or self._hooks[POST_DUMP]:
            return super().dump(obj, many=many)
        plan = self._lean_plan
        if plan is None:
            plan = self._lean_plan = self._plan()
        result = self.dict_class()
        for key, name, field, path, kept in plan:
            if path is None:
                value = field.serialize(name, obj, accessor=self.get_attribute)
            else:
                value = obj
                for part in path:
                    value = _value_for_key(value, part)
                if value is missing:
                    default = field.dump_default
                    value = default() if callable(default) else default
                    if value is missing:
                        continue
                if kept is object or type(value) is kept:
                    result[key] = value  # what _serialize would give back
                    continue
                value = field._serialize(value, name, obj)
            if value is not missing:
                result[key] = value
        return result

    def _plan(self) -> list[_Step]:
        """Each dumped field's key, name, field and attribute path, in ``dump_fields`` order."""
        own_access = type(self).get_attribute is Schema.get_attribute
        plan: list[_Step] = []
        for name, field in self.dump_fields.items():
            key = field.data_key if field.data_key is not None else name
            attribute = name if field.attribute is None else field.attribute
            readable = own_access and _reads_its_attribute(field)
            path = tuple(attribute.split(".")) if readable else None
            plan.append((key, name, field, path, _kept_type(field)))
        return plan

    def load(
        self,
        data: Any,
        *,
        many: bool | None = None,
        partial: Any = None,
        unknown: str | None = None,
    ) -> Any:
        plan = self._lean_load_plan
        if plan is None:
            plan = self._lean_load_plan = self._load_plan()
        if (
            not plan.covered
            or type(data) is not dict
            or (self.many if many is None else many)
            or (self.partial if partial is None else partial)
            or (self.unknown if unknown is None else unknown) != EXCLUDE
        ):
            return super().load(data, many=many, partial=partial, unknown=unknown)
        result = self.dict_class()
        try:
            for key, field, attribute in plan.fields:
                value = field.deserialize(data.get(key, missing), key, data)
                if value is not missing:
                    set_value(result, attribute, value)
            # ``@validates`` methods, called as ``_invoke_field_validators`` calls them.
            for validator, data_key, attribute in plan.validators:
                if (
                    attribute in result
                    and getattr(self, validator)(result[attribute], data_key=data_key) is missing
                ):
                    result.pop(attribute, None)
        except ValidationError:  # marshmallow's run gives the error, messages and all
            return super().load(data, many=many, partial=partial, unknown=unknown)
        return result

    def _load_plan(self) -> _LoadPlan:
        """What ``load`` reads (key, field, attribute) and which field validators it runs."""
        fields_plan = [
            (field.data_key if field.data_key is not None else name, field, field.attribute or name)
            for name, field in self.load_fields.items()
        ]
        validators: list[tuple[str, str, str]] = []
        covered = not any(self._hooks[hook] for hook in (PRE_LOAD, POST_LOAD, VALIDATES_SCHEMA))
        for method, _, options in self._hooks[VALIDATES]:
            for name in options["field_names"]:
                field = self.fields.get(name)
                if field is None:  # excluded (skipped by marshmallow too) or a mistake
                    covered = covered and name in self.declared_fields
                    continue
                data_key = field.data_key if field.data_key is not None else name
                # marshmallow reads the result under the attribute but pops the field name.
                covered = covered and (field.attribute or name) == name
                validators.append((method, data_key, field.attribute or name))
        return _LoadPlan(covered, fields_plan, validators)


@dataclass(frozen=True)
class _LoadPlan:
    """Whether ``LeanSchema.load`` can take a schema's loads, and what it does for them."""

    covered: bool
    fields: list[tuple[str, fields.Field, str]]
    validators: list[tuple[str, str, str]]
