"""Ask a private question: differentially private answers from safeguarded data, in a form.

A signed-in researcher on a project with an active grant for a safeguarded dataset writes a
question in the restricted SQL (:data:`ndl.privacy.ALLOWED_SQL`) and chooses how much privacy
budget (zCDP rho) to spend. Two steps, as ``ndl dp-query`` does: "Preview" shows the expected
error of each answer and the budget left and spends nothing; "Confirm and spend" runs it.

The page calls the same service as the JSON API
(:func:`ndl.privacy.service.private_query`), never HTTP to itself, so the page and the API
make the same checks (tier, per-query limit, membership, an active grant, the SQL) and the
datasite keeps the same ledger. The routes depend on ``ndl.hub.deps.public`` and look at the
signed-in user themselves, like the other signed-in pages: anonymous visitors are sent to
sign in and back, and only researchers get the form.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access import service as access_service
from ndl.access.accounts import Principal
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import (
    BudgetExhausted,
    InvalidInput,
    NdlError,
    NotFound,
    PermissionDenied,
    UpstreamTimeout,
)
from ndl.hub.deps import hub
from ndl.privacy import service as privacy
from ndl.privacy.service import PrivateQueryBody
from ndl.privacy.spec import is_identifier, metadata_bounds, public_values
from ndl.privacy.wording import privacy_unit, worded_rows
from ndl.web.dataset_view import links_for
from ndl.web.forms import (
    Who,
    ashow,
    crash_page,
    error_list,
    error_page,
    posted,
    sentence,
    show,
    sign_in_redirect,
    value,
)
from ndl.web.render import pages_of

router = APIRouter(include_in_schema=False)

PATH = "/datasets/{site}/{name}/private-query"
DEFAULT_RHO = 0.1
MAX_SQL_CHARS = 10_000  # as the JSON API's PrivateQueryBody allows
MAX_PROJECT_CHARS = 64
FIELDS = ("project", "sql", "rho", "question")
KEY_VALUES_SHOWN = 12  # a long code list is cut short in the list of keys
NOT_SPENT = "Nothing was spent: your privacy budget is as it was."


def page_path(dataset_id: str) -> str:
    """The site-relative address of a dataset's private-question page."""
    return links_for(dataset_id)["page"] + "/private-query"


# --- what the page shows ---------------------------------------------------------------------

def _not_a_researcher(request: Request) -> HTMLResponse:
    return pages_of(request).error(
        request, 403, "Only researchers can ask private questions",
        "Your account does not have the researcher role. Ask your organisation's library "
        "administrator to add it.")


def group_keys(meta: DatasetMeta) -> list[dict[str, Any]]:
    """Columns a question may group by: their values are published, so groups leak nothing."""
    keys = []
    for col in meta.columns:
        values = public_values(col)
        if values is None or is_identifier(col):
            continue
        shown = [str(v) for v in values[:KEY_VALUES_SHOWN]]
        keys.append({"name": col.name, "values": shown,
                     "more": max(0, len(values) - KEY_VALUES_SHOWN)})
    return keys


def _ident(name: str) -> str:
    """A column name as SQL: quoted only when it is not a plain word."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def examples(meta: DatasetMeta, keys: list[dict[str, Any]]) -> list[str]:
    """Questions that pass as written, built from this dataset's own public keys.

    Text for the page, never executed: the datasite parses what the researcher sends.
    """
    by = f" GROUP BY {_ident(keys[0]['name'])}" if keys else ""
    out = [f"SELECT COUNT(*) AS n FROM data{by}"]  # noqa: S608 - shown, never run
    bounded = next((c for c in meta.columns if c.type in ("integer", "float")
                    and not is_identifier(c) and metadata_bounds(c) is not None), None)
    if bounded is not None:
        out.append(f"SELECT COUNT(*) AS n, AVG({_ident(bounded.name)}) AS mean_value "  # noqa: S608
                   f"FROM data{by}")
    return out


def _number(v: float) -> str:
    """A noisy number to a sensible precision: its noise makes more digits meaningless."""
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.1f}"
    return f"{v:.2g}"


def plus_minus(half: Any) -> str:
    """A 95% half-width as text: one number, a range over groups, or not stated."""
    if isinstance(half, int | float) and math.isfinite(half):
        return f"± {_number(float(half))}"
    if isinstance(half, list):
        known = [float(h) for h in half if isinstance(h, int | float) and math.isfinite(h)]
        if known:
            lo, hi = min(known), max(known)
            return f"± {_number(lo)}" if lo == hi else \
                f"± {_number(lo)} to ± {_number(hi)}, by group"
        return "Shown with the answer, by group"
    return "Not stated"


def _what(agg: dict[str, Any]) -> str:
    op, column = str(agg.get("op", "")), agg.get("column")
    names = {"count": "Count of rows", "sum": "Sum of", "mean": "Mean of",
             "quantile": "Quantile of", "histogram": "Histogram of"}
    return names.get(op, op) if not column else f"{names.get(op, op)} {column}"


# Library and parameter names mean nothing to the person reading: say what they stand for.
_INTERNAL = [
    (re.compile(r"\s*\((?:OpenDP\b[^)]*)\)"), ""),  # "(OpenDP make_gaussian, i64)"
    (re.compile(r"\bgive n_estimate \(rows per group\)"),
     "it depends on how many rows each group has"),
    (re.compile(r"\bn_estimate\b"), "the expected rows per group"),
    (re.compile(r"\bmake_\w+|\b[if](?:32|64)\b"), ""),
]


def plain(text: Any) -> str:
    """A mechanism or note from the service without internal names (``make_gaussian``,
    ``i64``, ``n_estimate``)."""
    out = str(text or "")
    for pattern, words in _INTERNAL:
        out = pattern.sub(words, out)
    out = re.sub(r"\(\s*,?\s*\)", "", out)
    return re.sub(r"\s{2,}", " ", out).strip()


def mechanism_text(mechanism: Any) -> str:
    """How the noise is made, in words: ``discrete Gaussian (OpenDP make_gaussian, i64)``
    becomes ``Whole-number noise (discrete Gaussian)``."""
    name = plain(mechanism)
    if name.lower() == "discrete gaussian":
        return "Whole-number noise (discrete Gaussian)"
    if name.lower() == "gaussian":
        return "Bell-curve noise (Gaussian)"
    return name


def aggregates_view(aggregates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"label": a.get("label", ""), "what": _what(a), "error": plus_minus(
        a.get("half_width_95")), "mechanism": mechanism_text(a.get("mechanism", "")),
        "note": plain(a.get("note", "")), "rho": _rho(a.get("rho"))} for a in aggregates]


def _rho(v: Any) -> str:
    return f"{max(0.0, round(float(v), 6)):g}" if isinstance(v, int | float) else ""


def budget_view(left: dict[str, Any]) -> list[dict[str, str]]:
    """The budget left, in the order a researcher reads it: theirs, the project's, the data's."""
    dataset = left.get("dataset")
    return [
        {"id": "budget-researcher", "key": "Yours, on this dataset", "value": _rho(
            left.get("researcher"))},
        {"id": "budget-project", "key": "Your project's, on this dataset",
         "value": _rho(left.get("project"))},
        {"id": "budget-dataset", "key": "The dataset's, for everyone",
         "value": "No limit" if dataset is None else _rho(dataset)},
        {"id": "budget-next", "key": "Most you can spend on the next question",
         "value": _rho(left.get("max_next_query"))},
    ]


def unit_text(unit: Any, max_rows: Any) -> str:
    """What the noise protects, in words (the one wording, shared with ``ndl dp-query``)."""
    return privacy_unit(unit, max_rows)


def answer_view(result: dict[str, Any]) -> dict[str, Any]:
    """The DP answer's table: keys as given, numbers formatted, withheld cells named."""
    columns = [str(c) for c in result.get("columns", [])]
    aggregates = list(result.get("aggregates", []))
    # Each number with its margin in words, as every face words it (ndl.privacy.wording).
    worded = worded_rows(result)
    n_keys = sum(1 for c in worded[0] if c.key) if worded else \
        max(0, len(columns) - len(aggregates))
    rows = [[{"text": c.text, "key": True} if c.key else
             # Withheld, never a number: a group too small to show has no mean or count.
             {"text": c.text, "suppressed": True} if c.withheld else {"text": c.text}
             for c in row] for row in worded]
    sdc = result.get("sdc") or {}
    return {"columns": columns, "n_keys": n_keys, "rows": rows,
            "aggregates": aggregates_view(aggregates),
            "rho_spent": _rho(result.get("rho_spent")),
            "unit": unit_text(result.get("privacy_unit"), result.get("max_rows_per_person")),
            # Counted as shown: a mean whose group has no noisy rows is withheld too.
            "suppressed": sum(1 for r in rows for c in r if c.get("suppressed")),
            "suppress_below": sdc.get("suppress_below"), "round_to": sdc.get("round_to"),
            "budget": budget_view(result.get("budget_remaining") or {})}


def preview_view(result: dict[str, Any]) -> dict[str, Any]:
    p = result.get("preview") or {}
    return {"rho": _rho(p.get("rho")), "groups": p.get("groups"),
            "confidence": round(float(p.get("confidence") or 0.95) * 100),
            "unit": unit_text(p.get("privacy_unit"), p.get("max_rows_per_person")),
            "aggregates": aggregates_view(list(p.get("aggregates", []))),
            "budget": budget_view(result.get("budget_remaining") or {})}


def page_context(s: Session, dataset_id: str, who: Principal, *,
                 form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                 preview: dict[str, Any] | None = None, answer: dict[str, Any] | None = None,
                 spent_note: str = "", status: int = 200) -> tuple[str, dict[str, Any]]:
    """Everything private_query.html needs. Raises NotFound / PermissionDenied for the page."""
    from ndl.privacy import ALLOWED_SQL  # sqlglot loads on first use, not at hub start

    setup = access_service.private_question_setup(s, who, dataset_id)
    ds, per_query = setup.dataset, setup.per_query
    meta = DatasetMeta.model_validate(ds.meta)
    keys = group_keys(meta)
    projects = [{"id": p.id, "title": p.title} for p in setup.projects]
    form = dict(form or {})
    form.setdefault("rho", f"{min(DEFAULT_RHO, per_query):g}")
    if len(projects) == 1 and not form.get("project"):
        form["project"] = projects[0]["id"]
    errors = errors or {}
    chosen = next((p for p in projects if p["id"] == form.get("project")), None)
    return "private_query.html", {
        "ds": catalogue.summary_json(ds), "links": links_for(ds.id),
        "action": page_path(ds.id), "form": form, "errors": errors,
        "error_list": error_list({f: errors[f] for f in FIELDS if f in errors}),
        "projects": [{"value": p["id"], "text": p["title"],
                      "hint": {"text": f"Project {p['id']}"},
                      "checked": p["id"] == form.get("project")} for p in projects],
        "chosen_project": chosen, "per_query": f"{per_query:g}",
        "allowed_sql": ALLOWED_SQL, "keys": keys, "examples": examples(meta, keys),
        "preview": preview, "answer": answer, "spent_note": spent_note,
        "status": status,
    }


# --- the routes ------------------------------------------------------------------------------

@router.get(PATH, response_class=HTMLResponse)
def private_query_page(request: Request, site: str, name: str, who: Who,
                       project: str = "") -> Response:
    if who is None:
        return sign_in_redirect(request)
    if not access_service.can_ask_private_questions(who):
        return _not_a_researcher(request)
    form = {"project": project.strip()[:MAX_PROJECT_CHARS]} if project.strip() else {}
    return show(request, lambda s: page_context(s, f"{site}/{name}", who, form=form))


def read_rho(text: str, per_query: float) -> tuple[float | None, str]:
    """The rho typed, or None and what to fix (GOV.UK wording)."""
    if not text:
        return None, "Enter how much privacy budget to spend (rho), for example 0.1"
    try:
        rho = float(text)
    except ValueError:
        return None, "Rho must be a number, for example 0.1"
    if not math.isfinite(rho):
        return None, "Rho must be a number, for example 0.1"
    if rho <= 0:
        return None, "Rho must be more than 0"
    if rho > per_query:
        return None, (f"Rho must be {per_query:g} or less: that is this dataset's limit for "
                      "one question")
    return rho, ""


# The service checks the JSON form, whose aggregates are count/sum/mean/quantile/histogram;
# someone who wrote AVG(age) should read AVG, not "mean".
_SQL_NAMES = {"count": "COUNT", "sum": "SUM", "mean": "AVG", "quantile": "PERCENTILE_CONT",
              "histogram": "HISTOGRAM"}
_AGGREGATE = re.compile(r"\b[Aa]ggregate (\d+) \((count|sum|mean|quantile|histogram)\)")
_JSON_CALL = re.compile(r"\b(count|sum|mean|quantile|histogram)\(")


def _sql_words(message: str) -> str:
    out = _AGGREGATE.sub(
        lambda m: f"{_SQL_NAMES[m[2]]} (item {m[1]} after SELECT)", message)
    return _JSON_CALL.sub(lambda m: f"{_SQL_NAMES[m[1]]}(", out)


def _sql_error(message: str) -> str:
    """What is wrong with the SQL, without the service's list of what is allowed: the page
    shows the SQL form's own list (not the JSON spec's) beside the summary and the box."""
    return sentence(_sql_words(message.split(". Allowed: ", 1)[0].rstrip(". ")))


def errors_of(exc: NdlError, running: bool) -> tuple[dict[str, str], str]:
    """The field each refusal belongs to, and what it means for the budget."""
    message = sentence(exc.message)
    if isinstance(exc, BudgetExhausted):
        return {"rho": message}, ""  # its message already says nothing was spent
    if isinstance(exc, PermissionDenied | NotFound):
        return {"project": message}, NOT_SPENT
    if isinstance(exc, InvalidInput):
        if exc.message.startswith("rho"):
            return {"rho": message}, NOT_SPENT
        return {"sql": _sql_error(exc.message)}, NOT_SPENT
    if isinstance(exc, UpstreamTimeout) and running:
        return {"question": message}, (
            "If the datasite ran the question after the hub stopped waiting, it spent the "
            "budget for it: preview again to see the budget left before you ask again.")
    return {"question": message}, NOT_SPENT


@router.post(PATH, response_class=HTMLResponse)
async def ask_private_question(request: Request, site: str, name: str, who: Who) -> Response:
    """Preview (``action=preview``, the default) or run (``action=run``) a private question."""
    dataset_id = f"{site}/{name}"
    got = await posted(request, who, page_path(dataset_id))
    if isinstance(got, Response):
        return got
    raw, who = got
    if not access_service.can_ask_private_questions(who):
        return _not_a_researcher(request)
    state = hub(request)

    def limit() -> float:
        with state.db.read() as s:
            return access_service.private_question_setup(s, who, dataset_id).per_query

    try:
        per_query = await run_in_threadpool(limit)
    except NdlError as exc:
        return error_page(request, exc)
    sql = raw.get("sql")
    form = {"project": value(raw, "project", MAX_PROJECT_CHARS),
            "sql": sql.strip() if isinstance(sql, str) else "",
            "rho": value(raw, "rho", 40)}
    running = value(raw, "action", 20) == "run"  # anything else only previews
    errors: dict[str, str] = {}
    if not form["project"]:
        errors["project"] = "Choose the project you are asking for"
    if not form["sql"]:
        errors["sql"] = "Enter your question as SQL, for example SELECT COUNT(*) AS n FROM data"
    elif len(form["sql"]) > MAX_SQL_CHARS:
        errors["sql"] = f"The SQL must be {MAX_SQL_CHARS:,} characters or fewer"
    rho, rho_error = read_rho(form["rho"], per_query)
    if rho_error:
        errors["rho"] = rho_error
    preview = answer = None
    spent_note, status = "", 200
    if errors:
        spent_note, status = NOT_SPENT, 422
    else:
        try:
            body = PrivateQueryBody(project=form["project"], sql=form["sql"], rho=rho,
                                    preview=not running)
            result = await privacy.private_query(state, who, dataset_id, body)
        except ValidationError:  # only what the checks above let through: an odd project id
            errors, spent_note, status = {"project": "Choose one of your projects"}, \
                NOT_SPENT, 422
        except NdlError as exc:
            errors, spent_note = errors_of(exc, running)
            status = exc.http_status
        except Exception:
            return crash_page(request)
        else:
            if running:
                answer = answer_view(result)
            else:
                preview = preview_view(result)
    return await ashow(request, lambda s: page_context(
        s, dataset_id, who, form=form, errors=errors, preview=preview, answer=answer,
        spent_note=spent_note, status=status))
