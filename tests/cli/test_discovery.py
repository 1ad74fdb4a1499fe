"""Discovery: which modules are imported and which subscriptions they yield."""

from __future__ import annotations

import pytest

from relay import ConfigurationError, Settings
from relay.discovery import discover, find_subs_modules
from tests.cli.conftest import Project

HANDLER = """
from relay import sub

@sub(topic="{topic}")
def {name}(data, **attrs):
    return data
"""


def handler(topic: str, name: str) -> str:
    return HANDLER.format(topic=topic, name=name)


def test_finds_nested_subs_modules_and_packages(project: Project) -> None:
    project.write("subs.py", handler("top", "top_handler"))
    project.write("shop/__init__.py")
    project.write("shop/orders/subs.py", handler("orders", "on_order"))  # namespace package
    project.write("billing/subs/__init__.py", handler("invoices", "on_invoice"))
    project.write("billing/subs/refunds.py", handler("refunds", "on_refund"))

    found = dict(find_subs_modules(project.root))
    subs = discover(project.root)

    assert sorted(found) == ["billing.subs", "shop.orders.subs", "subs"]
    assert sorted(s.handler_name for s in subs) == [
        "billing.subs.on_invoice",
        "billing.subs.refunds.on_refund",
        "shop.orders.subs.on_order",
        "subs.top_handler",
    ]


@pytest.mark.parametrize(
    "directory",
    [".venv/lib", "venv", "node_modules/pkg", "site-packages", "build", "dist", "tests",
     ".hidden", "my-app", "env"],
)
def test_skips_virtualenvs_build_output_tests_and_unimportable_dirs(
    project: Project, directory: str
) -> None:
    project.write("subs.py", handler("kept", "kept"))
    project.write(f"{directory}/subs.py", "raise RuntimeError('must not be imported')\n")
    if directory == "env":  # a virtualenv with any name is recognised by its pyvenv.cfg
        project.write("env/pyvenv.cfg", "home = /usr/bin\n")

    subs = discover(project.root)

    assert [s.handler_name for s in subs] == ["subs.kept"]


def test_explicit_modules_replace_the_walk(project: Project) -> None:
    project.write("subs.py", "raise RuntimeError('the walk must not run')\n")
    project.write("workers/handlers.py", handler("jobs", "on_job"))

    subs = discover(project.root, ["workers.handlers"])

    assert [s.topic for s in subs] == ["jobs"]


def test_class_based_subscriptions_are_instantiated(project: Project) -> None:
    project.write(
        "subs.py",
        """
        from relay import Subscription

        class NeedsArguments(Subscription):
            '''A base class: its constructor needs arguments, so it is not a subscription.'''

        class PhotoUploaded(NeedsArguments):
            topic = "photo-uploaded"

            def __init__(self):
                self._func = self.callback_func
                super().__init__(self._func, self.topic)

            def callback_func(self, data, **kwargs):
                return data["id"]

        class AlreadyBuilt(Subscription):
            def __init__(self):
                super().__init__(self.handle, "built")

            def handle(self, data, **kwargs):
                return None

        built = AlreadyBuilt()  # the module's own instance is used, not a second one
        """,
    )

    subs = discover(project.root)

    assert sorted(s.topic for s in subs) == ["built", "photo-uploaded"]
    photo = next(s for s in subs if s.topic == "photo-uploaded")
    assert photo({"id": 7}) == 7


def test_same_subscription_imported_twice_is_not_a_duplicate(project: Project) -> None:
    project.write("common/__init__.py", handler("shared", "shared_handler"))
    project.write("a/subs.py", "from common import shared_handler\n")
    project.write("b/subs.py", "from common import shared_handler\n")

    subs = discover(project.root)

    assert [s.name for s in subs] == ["shared"]


def test_duplicate_names_name_both_handlers(project: Project) -> None:
    project.write("a/subs.py", handler("orders", "first"))
    project.write("b/subs.py", handler("orders", "second"))

    with pytest.raises(ConfigurationError) as info:
        discover(project.root)

    assert "a.subs.first" in str(info.value)
    assert "b.subs.second" in str(info.value)


def test_duplicates_are_checked_after_the_settings_prefixes(project: Project) -> None:
    project.write(
        "subs.py",
        """
        from relay import sub

        @sub(topic="orders")            # gets SUB_PREFIX: shop-orders
        def implicit(data, **attrs): ...

        @sub(topic="orders", prefix="shop")
        def explicit(data, **attrs): ...
        """,
    )

    assert len(discover(project.root)) == 2  # "orders" and "shop-orders"
    with pytest.raises(ConfigurationError, match="'shop-orders'"):
        discover(project.root, settings=Settings(sub_prefix="shop"))


def test_import_error_names_the_module_file_line_and_error(project: Project) -> None:
    project.write("shop/subs.py", "import os\n\nvalue = undefined_name\n")

    with pytest.raises(ConfigurationError) as info:
        discover(project.root)

    message = str(info.value)
    assert "'shop.subs'" in message
    assert "shop/subs.py:3" in message
    assert "NameError: name 'undefined_name' is not defined" in message


def test_a_bad_declaration_points_at_the_users_line(project: Project) -> None:
    project.write(
        "subs.py",
        """
        from relay import sub

        @sub(topic="orders")
        def no_kwargs(data):
            pass
        """,
    )

    with pytest.raises(ConfigurationError) as info:
        discover(project.root)

    # The decorator's line (Python 3.11+) or the def's (3.10): the user's declaration.
    assert "subs.py:4" in str(info.value) or "subs.py:5" in str(info.value)
    assert "does not accept **kwargs" in str(info.value)


def test_syntax_error_names_the_file(project: Project) -> None:
    project.write("subs.py", "def broken(:\n")

    with pytest.raises(ConfigurationError, match=r"subs\.py:1.*SyntaxError"):
        discover(project.root)


def test_a_missing_explicit_module_is_named(project: Project) -> None:
    with pytest.raises(ConfigurationError, match="'no_such_module'"):
        discover(project.root, ["no_such_module"])
