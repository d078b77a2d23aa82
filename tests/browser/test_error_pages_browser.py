"""The styled 404 page in Chromium (issue 16, item 9): the console's stylesheet applies under its
Content-Security-Policy (Django's DEBUG pages lost their inline styles to it), nothing is refused,
and the page fits a phone's width."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _watch(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" and "404" not in message.text else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


@pytest.mark.parametrize("width", [1280, 390])
def test_styled_404_page_for_a_visitor(page, live_server, width):
    page.set_viewport_size({"width": width, "height": 800})
    problems = _watch(page)
    response = page.goto(f"{live_server.url}/no/such/page")
    assert response.status == 404
    card = page.get_by_test_id("error-page")
    assert card.is_visible()
    assert page.get_by_role("heading", name="This page does not exist").is_visible()
    # The console's stylesheet applied: the card is a white panel with a border, centred text.
    styles = card.evaluate("el => { const s = getComputedStyle(el); return [s.backgroundColor, s.borderTopStyle, s.textAlign]; }")
    assert styles == ["rgb(255, 255, 255)", "solid", "center"]
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert not problems, problems
    page.get_by_role("link", name="Back to the console").click()
    page.wait_for_url(f"{live_server.url}/login**")


def test_styled_404_page_for_a_logged_in_user_keeps_the_sidebar(logged_in_page, live_server):
    page = logged_in_page
    problems = _watch(page)
    assert page.goto(f"{live_server.url}/instances/no-such-instance-anywhere").status == 404
    page.get_by_test_id("error-page").wait_for()
    assert page.get_by_role("navigation", name="Console").get_by_role("link", name="Instances").is_visible()
    assert not problems, problems
