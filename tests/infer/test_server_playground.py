"""The playground page at /: a real headless Chromium types a message and sees the streamed reply appear.
Skipped, with the reason, where no Chromium and chromedriver are installed (`make test` installs them where
the system's package manager allows)."""
from __future__ import annotations

import shutil
import time

import httpx
import pytest
import torch
from server_util import live_server

from slm.infer import Engine
from slm.infer.server import create_app

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


class SlowModel(torch.nn.Module):
    """Each forward waits a little, so that a reply arrives over many polls of the page."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def new_cache(self, batch, max_len):
        return self.model.new_cache(batch, max_len)

    def forward(self, *args, **kwargs):
        time.sleep(0.05)
        return self.model(*args, **kwargs)


def test_page_is_served_without_a_key_and_names_the_model(tiny_model, tokenizer):
    app = create_app(Engine(tiny_model, tokenizer), model_name="tiny<&>", api_key="sk-x")
    with live_server(app) as url:
        page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "tiny&lt;&amp;&gt;" in page.text and "/v1/chat/completions" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no Chromium and chromedriver installed "
                    "(apt-get install chromium chromium-driver; `make test` tries to)")
def test_a_message_typed_in_the_page_streams_a_reply(tiny_model, tokenizer):
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    app = create_app(Engine(SlowModel(tiny_model), tokenizer), model_name="tiny", max_tokens_cap=40)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    with live_server(app) as url:
        expected = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "def main"}], "max_tokens": 30, "temperature": 0,
        }).json()["choices"][0]["message"]["content"]
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        try:
            driver.get(url + "/")
            assert driver.find_element(By.ID, "model").text == "tiny"
            driver.find_element(By.ID, "temperature").clear()
            driver.find_element(By.ID, "temperature").send_keys("0")
            driver.find_element(By.ID, "max_tokens").clear()
            driver.find_element(By.ID, "max_tokens").send_keys("30")
            driver.find_element(By.ID, "input").send_keys("def main")
            driver.find_element(By.ID, "send").click()
            seen, deadline = [], time.time() + 60
            reply = lambda: driver.execute_script(
                "const m = document.querySelectorAll('.msg.assistant .content'); return m.length ? m[0].textContent : null")
            while time.time() < deadline:  # until the reply is done (the send button comes back)
                text = reply()
                if text and (not seen or seen[-1] != text):
                    seen.append(text)
                if seen and driver.find_element(By.ID, "send").is_enabled():
                    break
                time.sleep(0.02)
            final = reply()
        finally:
            driver.quit()
    assert final == expected
    assert len(seen) >= 2 and all(final.startswith(s) for s in seen)  # the reply grew as it streamed
