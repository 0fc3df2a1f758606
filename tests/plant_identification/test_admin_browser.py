"""The circuit dashboard in a real headless Chromium: log in, see a circuit open in red, force it closed, see green.

Uses Debian's chromium and chromedriver (CI installs both); Chromium may reach the live server only. The
screenshots are kept in tests/artifacts/ (ignored by git) and their paths printed.
"""

import os
import re
from pathlib import Path

import pytest
from django.urls import reverse

from apps.plant_identification import admin as plant_admin
from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.models import Circuit, CircuitOverride
from apps.plant_identification.providers import Provider

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WAIT_SECONDS = 15
RED, GREEN = "rgba(198, 40, 40, 1)", "rgba(46, 125, 50, 1)"


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        missing = f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):  # .ci/run installs both: there, a missing browser is a failure, never a skip
            pytest.fail(missing)
        # A developer's machine with only Python (the README's test command) has no browser: say so and go on.
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        # Nothing but the live server resolves, so Chromium cannot fetch anything from outside.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    yield driver
    driver.quit()


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    assert driver.save_screenshot(str(target))
    print(f"screenshot: {target}")
    return target


def test_staff_see_an_open_circuit_red_force_it_closed_and_see_it_green(
    browser, live_server, django_user_model, monkeypatch
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setattr(plant_admin, "CIRCUIT_REFRESH_SECONDS", 0)  # no reload in the middle of the test
    django_user_model.objects.create_superuser("operator", "operator@example.org", "pw-operator")
    for provider in Provider:
        Circuit.objects.get_or_create(provider=provider.value)
    breaker_for(Provider.PLANTNET).open()
    wait = WebDriverWait(browser, WAIT_SECONDS)

    def state_of(provider: str):
        row = browser.find_element(By.XPATH, f"//table[@id='result_list']//tr[.//a[text()='{provider}']]")
        return row.find_element(By.CLASS_NAME, "circuit-state")

    dashboard = live_server.url + reverse("admin:plant_identification_circuit_changelist")
    browser.get(f"{live_server.url}{reverse('admin:login')}?next={dashboard}")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("pw-operator")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result_list .circuit-state")))

    assert state_of("plantnet").text == "open"
    assert state_of("plantnet").value_of_css_property("background-color") == RED
    assert state_of("plant_id").text == "closed"
    assert state_of("plant_id").value_of_css_property("background-color") == GREEN
    countdown = browser.find_element(By.CLASS_NAME, "circuit-countdown")
    started = int(countdown.get_attribute("data-seconds"))
    assert countdown.text == f"{started} s"
    wait.until(lambda _: int(countdown.get_attribute("data-seconds")) < started)  # counts down in the page
    assert re.fullmatch(r"\d+ s", countdown.text)
    screenshot(browser, "circuit-dashboard-open.png")

    browser.find_element(By.LINK_TEXT, "plantnet").click()
    close_form = wait.until(ec.presence_of_element_located((By.ID, "circuit-force-close")))
    assert browser.find_element(By.CLASS_NAME, "circuit-state").text == "open"
    close_form.find_element(By.NAME, "reason").send_keys("provider recovered")
    close_form.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist .success")))
    assert message.text == "Force close: done for plantnet."
    state = browser.find_element(By.CSS_SELECTOR, ".circuit-state")
    assert state.text == "closed"
    assert state.value_of_css_property("background-color") == GREEN
    transitions = browser.find_element(By.ID, "circuit-recent-transitions").text
    assert "open closed" in transitions  # the forced close, newest first

    browser.get(dashboard)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result_list .circuit-state")))
    assert state_of("plantnet").text == "closed"
    assert state_of("plantnet").value_of_css_property("background-color") == GREEN
    screenshot(browser, "circuit-dashboard-closed.png")
    assert CircuitOverride.objects.get().reason == "provider recovered"  # audited, with the operator
    assert CircuitOverride.objects.get().user.username == "operator"
