"""The console's layout at a phone's width and a laptop's (issue 16, item 8), screenshot-free.

One logged-in page visits every main console page at 390x844, then at 1280x800, and asserts the
document does not scroll sideways (`scrollWidth <= innerWidth`); the data includes a 63-character
instance id, the longest a hostname label allows, in tables, headings and records. Also: the
sidebar marks exactly one page as current (Billing and Alerts both used to), it is a top strip on
a phone and a column on a laptop, and a checkbox sits on its label's line.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_ID = "a-very-long-instance-name-that-uses-all-sixty-three-characters1"
assert len(LONG_ID) == 63

# The element that sticks out, named in the failure: the deepest one whose right edge passes the
# viewport (only run when the page scrolls sideways).
WIDEST = """() => {
  let worst = null;
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.right > innerWidth + 1 && r.width > 0) worst = el;
  }
  if (!worst) return 'nothing visible';
  const r = worst.getBoundingClientRect();
  return `<${worst.tagName.toLowerCase()} class="${worst.className}"> ${Math.round(r.left)}..${Math.round(r.right)}px: ${(worst.textContent || '').trim().slice(0, 60)}`;
}"""

# The box of a checkbox's label text (its first non-blank text node), as a DOMRect.
LABEL_TEXT_BOX = """input => {
  const label = input.labels[0];
  const walker = document.createTreeWalker(label, NodeFilter.SHOW_TEXT, {acceptNode: n => n.data.trim() ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP});
  const range = document.createRange();
  range.selectNodeContents(walker.nextNode());
  const r = range.getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height};
}"""


def _objects(user):
    """A tenant's worth of objects, with the long id everywhere one can go."""
    from billing.models import AlertConfig, AlertDelivery
    from deployments.models import Deployment
    from domains.models import CustomDomain
    from gateway.models import GatewayPolicy
    from instances.models import InstancePlan, Region
    from orchestrio.services import activity_record
    from orchestrio.tenancy import Actor
    from tasks.models import Task

    from ..factories import ApiTokenFactory, InstanceFactory

    tenant = user.memberships.get().tenant
    instance = InstanceFactory(tenant=tenant, instance_id=LONG_ID, ip_address="10.20.30.40", port=18789, labels={"environment": LONG_ID})
    task = Task.objects.create(
        task_id="tsk_layout0000000000000000000001", instance=instance, tenant=tenant, operation_code="backup-" + "x" * 40,
        script_path="/opt/orchestrio/scripts/" + LONG_ID + ".sh", requested_by=user.username, requested_by_type="user", status="succeeded",
        exit_code=0, stdout=("a-long-line-without-spaces-" * 12) + "\n",
    )  # fmt: skip
    deployment = Deployment.objects.create(
        tenant=tenant, name="web-" + "y" * 46, environment="production", blueprint=instance.blueprint,
        region=Region.objects.get(pk=instance.region_id), plan=InstancePlan.objects.get(pk=instance.plan_id), instance=instance, created_by=user.username,
    )  # fmt: skip
    GatewayPolicy.objects.create(instance=instance, tenant=tenant, slug="deploy-" + "z" * 50, provider="github-oidc", audience="https://" + LONG_ID + ".example", allow=[{"repository": "acme/" + LONG_ID}])
    CustomDomain.objects.create(instance=instance, tenant=tenant, domain=f"{LONG_ID}.{LONG_ID}.example.com", verification_token="v" * 64)
    ApiTokenFactory(tenant=tenant, created_by=user, name="ci-" + "t" * 60, instance_id=LONG_ID)
    AlertConfig.objects.create(tenant=tenant, webhook_url="https://hooks.example/" + LONG_ID, enabled=True)
    AlertDelivery.objects.create(id="alr_layout0000000000000000000001", tenant=tenant, event="instance.error", payload={}, url="https://hooks.example/x")
    activity_record(actor=Actor.system(), action="instance.create", tenant=tenant, object_type="instance", object_id=LONG_ID)
    from fleet.models import FleetRequest, FleetRequestItem
    from instances.models import Operation

    operation = Operation.objects.create(
        instance=instance, tenant=tenant, kind="create", status="failed", requested_by=user.username, requested_by_type="user",
        error_code="provider_capacity", error_message="no capacity for " + LONG_ID,
    )  # fmt: skip
    fleet_request = FleetRequest.objects.create(
        request_id="req-layout0000001", tenant=tenant, kind="acquire", blueprint_name="OpenClaw", plan_id="openclaw-basic",
        region="local", instance_id_prefix=LONG_ID[:59], count=1, requested_by=user.username, requested_by_type="user",
    )  # fmt: skip
    FleetRequestItem.objects.create(request=fleet_request, position=1, instance=instance, operation=operation)
    from addons.models import AddOn, AddOnBackup

    addon = AddOn.objects.create(
        addon_id="addon_layout00000000000001", tenant=tenant, instance=instance, engine="postgres", version="16", status="available",
        port=54321, username="app", database="app", password_encrypted="not-read-here", error_message="pg_restore failed: " + LONG_ID,
    )  # fmt: skip
    for n, status in enumerate(("available", "failed")):
        AddOnBackup.objects.create(
            backup_id=f"bak_layout0000000000000000{n}", addon=addon, tenant=tenant, kind="auto", status=status, storage="local",
            location="x", stored=True, size_bytes=123456789, sha256="a" * 64, requested_by=user.username,
            error_message="redis-cli --rdb failed: " + LONG_ID if status == "failed" else "",
        )  # fmt: skip
    return instance, task, deployment


def test_every_console_page_fits_a_phone_and_a_laptop(logged_in_page, live_server, console_user):
    instance, task, deployment = _objects(console_user)
    page = logged_in_page
    url = live_server.url

    pages = {
        "overview": reverse("console:home"),
        "instances list": reverse("instances:list"),
        "instance page": reverse("instances:detail", args=[LONG_ID]),
        "create instance": reverse("instances:create"),
        "destroy instance": reverse("instances:destroy", args=[LONG_ID]),
        "task page": reverse("tasks:detail", args=[task.task_id]),
        "deployments list": reverse("deployments:list"),
        "deployment page": reverse("deployments:detail", args=[deployment.pk]),
        "create deployment": reverse("deployments:create"),
        "activity": reverse("console:activity"),
        "API tokens": reverse("console:tokens"),
        "team": reverse("console:team"),
        "account": reverse("console:account"),
        "change password": reverse("console:password-change"),
        "billing": reverse("billing:overview"),
        "alerts": reverse("billing:alerts"),
        "operations": reverse("operations:list"),
        "fleet requests": reverse("fleet:list"),
        "fleet request": reverse("fleet:detail", args=["req-layout0000001"]),
        "notifications": reverse("console:notifications"),
        "reveal an add-on's URL": reverse("instances:addon-reveal", args=[LONG_ID, "addon_layout00000000000001"]),
        "destroy an add-on": reverse("instances:addon-destroy", args=[LONG_ID, "addon_layout00000000000001"]),
        "404 page": "/instances/no-such-instance-anywhere",
    }
    # Every tab of the instance page, as its tab bar links them (new tabs are checked too).
    page.goto(url + pages["instance page"])
    for link in page.get_by_role("navigation", name="Instance").get_by_role("link").all():
        label = link.inner_text().strip()
        if label != "Overview":
            pages[f"instance tab {label}"] = link.get_attribute("href")
    assert len(pages) > 23, pages  # the tabs were found (Tasks, Gateway, Domain)

    for width, height in ((390, 844), (1280, 800)):
        page.set_viewport_size({"width": width, "height": height})
        for name, path in pages.items():
            response = page.goto(url + path)
            assert response.status == (404 if name == "404 page" else 200), f"{name} at {width}px: {response.status}"
            # Overflow is not hidden to pass: content clipped off a phone's screen is the defect.
            assert page.evaluate("[getComputedStyle(document.documentElement).overflowX, getComputedStyle(document.body).overflowX]") == ["visible", "visible"]
            if not page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"):
                widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                pytest.fail(f"{name} ({path}) scrolls sideways at {width}px: {widths[0]} > {widths[1]}; widest: {page.evaluate(WIDEST)}")

        # The console's navigation: a strip above the content on a phone, a column beside it on a laptop.
        page.goto(url + pages["overview"])
        nav, main = page.locator("nav.sidebar").bounding_box(), page.locator("main").bounding_box()
        if width == 390:
            assert nav["y"] + nav["height"] <= main["y"] + 1 and nav["height"] < 120, (nav, main)
        else:
            assert nav["x"] + nav["width"] <= main["x"] + 1 and nav["height"] >= main["height"] - 1, (nav, main)

    # One current item in the sidebar: the longest matching address, not every prefix; "page" on
    # the item's own page, "true" (its section) on the pages below it.
    sidebar = page.get_by_role("navigation", name="Console")
    for name, label, kind in (("alerts", "Alerts", "page"), ("billing", "Billing", "page"), ("instance tab Tasks", "Instances", "true"), ("task page", "Instances", "true")):
        page.goto(url + pages[name])
        current = sidebar.locator("[aria-current]")
        assert current.count() == 1, f"{name}: {current.all_inner_texts()}"
        assert (current.inner_text(), current.get_attribute("aria-current")) == (label, kind), name

    # A checkbox on its label's line (it used to float to a line of its own), at both widths: the
    # label's text, measured whatever the markup around it, is beside the box and centred on it.
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(url + pages["alerts"])
        if width == 390:  # the current item is scrolled into the sidebar's row, not left off-screen
            item = sidebar.locator("[aria-current]").bounding_box()
            assert 0 <= item["x"] and item["x"] + item["width"] <= 390, item
        checkbox = page.get_by_role("checkbox", name="Enabled")
        box = checkbox.bounding_box()
        text = checkbox.evaluate(LABEL_TEXT_BOX)
        assert abs((box["y"] + box["height"] / 2) - (text["y"] + text["height"] / 2)) <= 4, (width, box, text)
        assert box["x"] + box["width"] <= text["x"] <= box["x"] + box["width"] + 16, (width, box, text)
