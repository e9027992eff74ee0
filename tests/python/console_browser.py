"""The console in a real browser (headless Chromium driven by Selenium).

    console_browser.py CONSOLE_URL WORKSPACE SCREENSHOTS AIRT [AIRT ARGS...]

Expects `airt up --auth-dev-mode` serving the console at CONSOLE_URL and its
workspace at WORKSPACE, and the `airt` command (with the stack's service
addresses) for what agents and operators do: put the policy, submit
workflows. Writes screenshots of the inbox and of an approval page into
SCREENSHOTS. Exits non-zero on the first failed check.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CONSOLE, WORKSPACE, SCREENSHOTS = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
AIRT = sys.argv[4:]

POLICY = """\
default: DENY
rules:
  - id: copies-need-a-look
    when: {capability: io.fs.copy}
    decision: REQUIRE_APPROVAL
    reason: A human checks what is published
  - id: workspace-writes
    when: {capability: ["io.fs.*"], operation_type: [WRITE]}
    decision: ALLOW
    reason: Files in the workspace can be restored
"""

WORKFLOW = """\
name: publish_note
version: 1.0.0
initial_state: {name: "%s"}
steps:
  - name: folder
    capability: io.fs.make_dir
    inputs: {path: "{{name}}"}
  - name: draft
    capability: io.fs.write_file
    depends_on: [folder]
    inputs: {path: "{{name}}/draft.md", content: "hello from the console test"}
  - name: publish
    capability: io.fs.copy
    depends_on: [draft]
    inputs: {from: "{{name}}/draft.md", to: "{{name}}/note.md"}
"""


def airt(*args: str, who: tuple[str, str] = ("user:root", "admin")) -> str:
    command = [*AIRT, "--as", who[0], "--roles", who[1], *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def submit(name: str) -> str:
    """Alice submits a workflow whose copy waits for an approval."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as spec:
        spec.write(WORKFLOW % name)
    out = airt("run", spec.name, who=("user:alice", "writer"))
    workflow_id = next(line.split()[1] for line in out.splitlines() if line.startswith("submitted"))
    for _ in range(100):
        status = json.loads(airt("workflow", "get", workflow_id, "-o", "json"))["status"]
        if status == "WORKFLOW_STATUS_PAUSED":
            return workflow_id
        time.sleep(0.1)
    raise AssertionError(f"{name} did not pause for its approval: {status}")


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    return driver


def sign_in(driver, principal: str, roles: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{CONSOLE}/signin")
    driver.find_element(By.CSS_SELECTOR, '[data-testid="signin-principal"]').send_keys(principal)
    driver.find_element(By.CSS_SELECTOR, '[data-testid="signin-roles"]').send_keys(roles)
    driver.find_element(By.CSS_SELECTOR, '[data-testid="signin-submit"]').click()
    signed = WebDriverWait(driver, 10).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="signed-in-as"]')))
    assert signed.text == principal, signed.text


def testid(driver, name: str):
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def approval_row(driver, workflow_id: str):
    """The inbox row of the workflow's approval."""
    driver.get(f"{CONSOLE}/")
    for row in driver.find_elements(By.CSS_SELECTOR, '[data-testid="approval-row"]'):
        if row.find_elements(By.CSS_SELECTOR, f'a[href="/workflows/{workflow_id}"]'):
            return row
    raise AssertionError(f"no inbox row for {workflow_id}: {driver.page_source[:2000]}")


def decide(driver, approval_id: str, verb: str, comment: str) -> None:
    """Approves or rejects on the approval's page, confirms, and waits for the
    answer: the approval's page again, or the page of a refusal."""
    driver.get(f"{CONSOLE}/approvals/{approval_id}")
    testid(driver, "decision-comment").send_keys(comment)
    testid(driver, f"{verb}-button").click()
    WebDriverWait(driver, 10).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="confirm-button"]'))).click()

    def answered(d) -> bool:
        # The confirmation page (which shows the approval too) gave way to
        # the answer: the approval's page, or the page of a refusal.
        try:
            css = lambda name: d.find_elements(By.CSS_SELECTOR, f'[data-testid="{name}"]')
            return not css("confirm-button") and bool(css("approval-status") or css("problem"))
        except WebDriverException:
            return False

    WebDriverWait(driver, 10).until(answered)


def workflow_status(driver, workflow_id: str, want: str) -> None:
    """Opens the workflow page; its live status reaches `want` (without reloading)."""
    started = time.monotonic()
    driver.get(f"{CONSOLE}/workflows/{workflow_id}")
    loaded = time.monotonic() - started
    try:
        WebDriverWait(driver, 30).until(
            EC.text_to_be_present_in_element((By.CSS_SELECTOR, '[data-testid="workflow-status"]'), want))
    except Exception:
        shown = driver.find_element(By.TAG_NAME, "main").text[:600]
        events = len(driver.find_elements(By.CSS_SELECTOR, "#timeline li"))
        now = json.loads(airt("workflow", "get", workflow_id, "-o", "json"))["status"]
        raise AssertionError(f"the page of {workflow_id} (at {driver.current_url} after {loaded:.1f} s) shows {shown} ({events} events), "
                             f"not {want}; the service says {now}; browser log: {driver.get_log('browser')}")


def post_without_csrf(driver, approval_id: str) -> int:
    """A form POST carrying the approver's session cookie but no CSRF token."""
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    request = urllib.request.Request(
        f"{CONSOLE}/approvals/{approval_id}/approve", method="POST",
        data=b"comment=forged&confirmed=yes",
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code


def main() -> None:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as policy:
        policy.write(POLICY)
    airt("policy", "put", "-f", policy.name, "--activate")
    run = os.urandom(3).hex()
    approved, own, rejected = submit(f"approved_{run}"), submit(f"own_{run}"), submit(f"rejected_{run}")

    driver = browser()
    try:
        # The approver's inbox names the action, its risk, the rule and the inputs.
        sign_in(driver, "user:bob", "approver")
        row = approval_row(driver, approved)
        text = row.text
        for expected in ("io.fs.copy", "copies-need-a-look", f"approved_{run}/note.md"):
            assert expected in text, f"{expected!r} not in the inbox row: {text}"
        assert row.find_element(By.CSS_SELECTOR, '[data-testid="risk"]').text in ("LOW", "MEDIUM", "HIGH", "CRITICAL")
        approval_id = row.get_attribute("data-approval-id")
        driver.save_screenshot(os.path.join(SCREENSHOTS, "console-inbox.png"))

        # Its page shows the inputs, the decision and the deadline.
        driver.get(f"{CONSOLE}/approvals/{approval_id}")
        assert f"approved_{run}/draft.md" in testid(driver, "inputs").text
        assert "copies-need-a-look" in testid(driver, "decision").text
        assert testid(driver, "expires").text.strip() not in ("", "-")
        driver.save_screenshot(os.path.join(SCREENSHOTS, "console-approval.png"))

        # On a phone's screen the page fits its width (tables scroll inside
        # their own box) and the decision is reachable.
        driver.set_window_size(390, 844)
        driver.get(f"{CONSOLE}/approvals/{approval_id}")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the approval page is {overflow}px wider than a phone screen"
        assert testid(driver, "approve-button").is_displayed()
        driver.save_screenshot(os.path.join(SCREENSHOTS, "console-approval-phone.png"))
        driver.set_window_size(1280, 1000)

        # A POST without the CSRF token is refused and decides nothing.
        assert post_without_csrf(driver, approval_id) == 403
        assert json.loads(airt("approvals", "show", approval_id, "-o", "json"))["status"] == "APPROVAL_STATUS_PENDING"

        # Approve with a comment: the workflow completes and the file exists.
        decide(driver, approval_id, "approve", "looks right")
        WebDriverWait(driver, 10).until(
            EC.text_to_be_present_in_element((By.CSS_SELECTOR, '[data-testid="approval-status"]'), "APPROVED"))
        assert testid(driver, "decided-comment").text == "looks right"
        workflow_status(driver, approved, "COMPLETED")
        assert os.path.exists(os.path.join(WORKSPACE, f"approved_{run}", "note.md")), "the approved copy did not run"

        # A rejection rolls the workflow back: the draft is gone.
        decide(driver, approval_row(driver, rejected).get_attribute("data-approval-id"), "reject", "not this one")
        workflow_status(driver, rejected, "ROLLED_BACK")
        assert not os.path.exists(os.path.join(WORKSPACE, f"rejected_{run}")), "the rollback left files"

        # The submitter cannot approve their own: the service's refusal is shown.
        sign_in(driver, "user:alice", "approver")
        decide(driver, approval_row(driver, own).get_attribute("data-approval-id"), "approve", "mine")
        reason = WebDriverWait(driver, 10).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="problem-reason"]')))
        assert reason.text == "SELF_APPROVAL", reason.text
        assert not os.path.exists(os.path.join(WORKSPACE, f"own_{run}", "note.md"))
    finally:
        driver.quit()
    print("console: inbox, approval page, approve -> COMPLETED, reject -> ROLLED_BACK, "
          "self-approval refused (SELF_APPROVAL), POST without CSRF token refused (403)")


if __name__ == "__main__":
    main()
