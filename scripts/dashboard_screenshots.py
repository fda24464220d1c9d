"""Screenshots of every dashboard page, as a person would see them after ``make demo``.

    make demo
    .venv/bin/driftloop up --no-scheduler &        # MLflow, the service (8080), the dashboard (8090)
    .venv/bin/python scripts/dashboard_screenshots.py [--home .driftloop] [--out DIR]

Sends the service some of the plant's last simulated day (and two invalid requests, so refusals show),
then loads each page in Debian's headless Chromium, waits until its charts are drawn, prints how many
traces each chart has and any console error, and saves ``<out>/<page>.png``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PAGES = ("models", "traffic", "drift", "decisions", "triggers", "retrainings", "shadow", "guards")
DRAWN = (
    "return [...document.querySelectorAll('div.chart')].every(d => d.classList.contains('js-plotly-plot'))"
)
TRACES = "return [...document.querySelectorAll('.js-plotly-plot')].map(g => g.data.length)"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def traffic(home: Path, service: str) -> None:
    day = sorted((home / "raw" / "plant").glob("date=*"))[-1]
    rows = pd.concat(pd.read_csv(f) for f in sorted(day.glob("*.csv"))).drop(columns=["timestamp"]).head(60)
    instances = [{k: _plain(v) for k, v in row.items()} for row in rows.to_dict("records")]
    for start in range(0, len(instances), 3):
        httpx.post(f"{service}/v1/predict", json={"instances": instances[start : start + 3]}, timeout=30)
    for _ in range(2):
        invalid = {"instances": [{**instances[0], "torque_nm": "?"}]}
        httpx.post(f"{service}/v1/predict", json=invalid, timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".driftloop"))
    parser.add_argument("--service", default="http://127.0.0.1:8080")
    parser.add_argument("--ui", default="http://127.0.0.1:8090")
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/dashboard-demo"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    traffic(args.home, args.service)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    failed = False
    try:
        for page in PAGES:
            driver.get(f"{args.ui}/{page}")
            deadline = time.monotonic() + 30
            while not driver.execute_script(DRAWN) and time.monotonic() < deadline:
                time.sleep(0.1)
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            traces = driver.execute_script(TRACES)
            failed |= bool(errors) or not traces
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1400, min(max(height + 200, 1000), 8000))  # + the window frame
            driver.save_screenshot(str(args.out / f"{page}.png"))
            driver.set_window_size(1400, 1000)
            print(f"{page:<12} charts (traces each) {traces}  console errors {errors or 'none'}")
    finally:
        driver.quit()
    print(f"screenshots: {args.out.resolve()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
