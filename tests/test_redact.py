from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotate.config import RunConfig
from annotate.engines.fake import FakeBackend
from annotate.ingest.redaction import redact_text
from annotate.labelling.pipeline import run
from annotate.prompts.library import PromptLibrary


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail me at jana.k@example.org please", "Mail me at [EMAIL] please"),
        ("Call +49 30 1234 5678 or (030) 555-1234", "Call [PHONE] or [PHONE]"),
        (
            "order 20931, order #55102 and Order number: A-77003",
            "order [ORDER], order #[ORDER] and Order number: [ORDER]",
        ),
        ("Refund to DE44 5001 0517 5407 3249 31 please", "Refund to [IBAN] please"),
        ("card 4111 1111 1111 1111", "card [CARD]"),
        # Chinese text: numbers straight after a character, mainland mobiles and ID card numbers
        ("我的手机号是13812345678，谢谢", "我的手机号是[PHONE]，谢谢"),
        ("电话：+86 139-1234-5678 或 138 1234 5678", "电话：[PHONE] 或 [PHONE]"),
        ("身份证号110101199003071234，另一个是11010519851231002X。", "身份证号[ID]，另一个是[ID]。"),
        ("邮箱是zhang.wei@example.cn，卡号6222021234567890123", "邮箱是[EMAIL]，卡号[CARD]"),
        (
            "订单号44120，退款129.00元，3到5个工作日，2026年3月1日",
            "订单号[ORDER]，退款129.00元，3到5个工作日，2026年3月1日",
        ),
        # issue 28, 1: numbers glued to ASCII letters
        ("13912345678QQ同号", "[PHONE]QQ同号"),
        ("加VX13712345678，或tel13612345678", "加VX[PHONE]，或tel[PHONE]"),
        ("身份证110101199003071234abc", "身份证[ID]abc"),
        # 2: full-width digits, dashes and spaces; an ID card written in groups
        ("手机138\u30001234\u30005678", "手机[PHONE]"),
        ("１３８－１２３４－５６７８", "[PHONE]"),
        ("证件 110101-19900307-123X 已核对", "证件 [ID] 已核对"),
        # 3: e-mails with a Chinese local part or a full-width at sign
        ("张三@example.com", "[EMAIL]"),
        ("邮箱是张三123@qq.com，谢谢", "邮箱是[EMAIL]，谢谢"),
        ("bob＠example.com", "[EMAIL]"),
        # 4: Chinese order, waybill and invoice numbers; WeChat and QQ ids
        (
            "订单30518，订单号：20931，运单号SF1234567890，发票号 12345",
            "订单[ORDER]，订单号：[ORDER]，运单号[ORDER]，发票号 [ORDER]",
        ),
        (
            "wxid_abc123xyz 或 微信号: zhang_wei88，加我微信zhangwei88好吗",
            "[WECHAT] 或 微信号: [WECHAT]，加我微信[WECHAT]好吗",
        ),
        ("QQ号 12345678", "QQ号 [QQ]"),
        ("our wechat: great_service, wechat is great", "our wechat: [WECHAT], wechat is great"),
        # what must stay: prices, ranges, dates, times, short codes
        (
            "It costs 34.90, takes 3-5 days, due 2026-03-01 or 01.03.2026, pickup code 7731 at 9-13",
            "It costs 34.90, takes 3-5 days, due 2026-03-01 or 01.03.2026, pickup code 7731 at 9-13",
        ),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redacted_text_never_reaches_the_engine(library: PromptLibrary, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(
        json.dumps(
            {
                "chat_id": "r",
                "messages": [
                    {"role": "customer", "text": "I'm jana.k@example.org, order 88412, call me on +49 170 1234567."},
                    {"role": "ai", "text": "Thanks."},
                ],
            }
        )
        + "\n"
    )
    fake = FakeBackend()
    run(
        RunConfig(
            inputs=[path],
            out=tmp_path / "run",
            prompts=library.paths,
            backend="fake",
            tasks=["initial_state"],
            redact=True,
        ),
        backend=fake,
    )
    sent = json.dumps([r.messages for r in fake.requests])
    assert "jana.k@example.org" not in sent and "88412" not in sent and "1234567" not in sent
    assert "[EMAIL]" in sent and "order [ORDER]" in sent and "[PHONE]" in sent
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["options"]["redact"] == [
        "email", "iban", "id_card", "mobile_cn", "card", "order", "wechat", "qq", "phone"
    ]  # fmt: skip


def test_every_reader_replays_how_the_run_read_its_input(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 18: after `run --redact --role kunde=customer`, `sample` wrote raw e-mail addresses into the coding
    file and left the role-mapped chat's excerpts empty, because it re-read the transcripts plainly."""
    from annotate.analysis.sample import SampleOptions, draw_sample
    from annotate.ingest.readers import parse_role_map
    from annotate.runs.reader import read_run, run_chats
    from tests.conftest import with_chats

    path = tmp_path / "c.jsonl"
    chats = [
        {
            "chat_id": f"k{i}",
            "messages": [
                {"role": "kunde", "text": f"Write to me at kunde{i}@example.org, it is urgent."},
                {"role": "ai", "text": "Thanks."},
            ],
        }
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(chat) + "\n" for chat in chats))
    out = tmp_path / "run"
    config = RunConfig(
        inputs=[path],
        out=out,
        prompts=library.paths,
        backend="fake",
        tasks=["initial_state"],
        redact=True,
        role_map=parse_role_map(["kunde=customer"]),
        limit=2,
    )
    run(config, backend=FakeBackend())
    loaded = read_run(out)
    _, manifest = loaded.labels, loaded.manifest
    replayed = run_chats(manifest)
    assert [c.chat_id for c in replayed] == ["k0", "k1"]  # the run's --limit
    coding, _ = draw_sample(*with_chats(read_run(out)), library, SampleOptions(design="random", per_variable=2))
    text = " ".join(coding["context"].tolist() + coding["target"].tolist())
    assert "@example.org" not in text and "[EMAIL]" in text
    assert coding["target"].str.contains("Customer: Write to me at").all()  # the role map, so not empty


def test_an_old_consensus_replays_its_sources_redaction_or_refuses(library: PromptLibrary, tmp_path: Path) -> None:
    """Issue 28 (5): a consensus written before the typed manifest had no options, so sample of a consensus of
    --redact runs showed raw e-mails. Its sources' options are carried forward; with no readable source it refuses."""
    import shutil

    from typer.testing import CliRunner

    from annotate.cli import app
    from tests.conftest import library_flags

    path = tmp_path / "c.jsonl"
    chats = [
        {"chat_id": f"k{i}", "messages": [{"role": "customer", "text": f"I am k{i}@example.org."}]} for i in range(4)
    ]
    path.write_text("".join(json.dumps(chat) + "\n" for chat in chats))
    for name in ("a", "b"):
        config = RunConfig(
            inputs=[path],
            out=tmp_path / name,
            prompts=library.paths,
            backend="fake",
            tasks=["initial_state"],
            redact=True,
        )
        run(config, backend=FakeBackend())
    runner = CliRunner()
    made = runner.invoke(app, ["consensus", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c")])
    assert made.exit_code == 0, made.output
    manifest = tmp_path / "c" / "manifest.json"
    old = {k: v for k, v in json.loads(manifest.read_text()).items() if k not in ("format_version", "kind", "options")}
    manifest.write_text(json.dumps(old))  # as format 1 wrote it

    def sample(out: str) -> object:
        args = [
            "sample",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / out),
            "--per-variable",
            "2",
            "--design",
            "random",
        ]
        return runner.invoke(app, [*args, *library_flags(library)])

    drawn = sample("coding.csv")
    assert drawn.exit_code == 0, drawn.output
    text = (tmp_path / "coding.csv").read_text()
    assert "@example.org" not in text and "[EMAIL]" in text
    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "b")
    refused = sample("again.csv")
    assert refused.exit_code == 1 and "old consensus whose source runs cannot be read" in refused.output
    assert not (tmp_path / "again.csv").exists()
