"""Table names live in one place: ``mmsrarec_lib.tables``; the SQL catalog documents exactly those tables."""

from mmsrarec_lib import schemas, tables
from mmsrarec_lib.sql.catalog import TABLES


def test_every_catalogued_table_is_named_in_tables_and_back():
    assert set(TABLES) == set(tables.ALL)
    assert len(set(tables.ALL)) == len(tables.ALL)


def test_each_name_constant_spells_its_table():
    for name in tables.ALL:
        assert getattr(tables, name.upper()) == name
        if hasattr(schemas, name.upper()):  # items -> schemas.ITEMS, ...
            assert TABLES[name].schema.equals(getattr(schemas, name.upper()))
