"""The data wishlist and each organisation's demand dashboard.

Anyone can read wishes and dashboards; signed-in users vote, comment and add wishes; a data
steward of an organisation a wish names can mark it planned or published. Each action calls
``ndl.wishlist.service``, the module behind the JSON API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access import service as access_service
from ndl.access.accounts import Principal
from ndl.catalogue import service as catalogue
from ndl.core.errors import InvalidInput, NdlError, NotFound
from ndl.core.tiers import TIERS
from ndl.hub.deps import hub
from ndl.web.dataset_view import links_for
from ndl.web.forms import (
    MAX_FIELD_CHARS,
    Who,
    ashow,
    error_list,
    error_page,
    field_errors,
    posted,
    see_other,
    sentence,
    show,
    sign_in_redirect,
    value,
    values,
)
from ndl.web.session import safe_next
from ndl.wishlist import service as wishes

router = APIRouter(include_in_schema=False)

WISH_FIELDS = ("title", "description", "orgs", "linkage", "purpose", "tier_needed")
DONE = {"voted": "Your vote was counted.", "unvoted": "Your vote was taken back.",
        "commented": "Your comment was added.", "planned": "The wish is marked planned.",
        "published": "The wish is marked published.", "created": "Your wish was added."}
MAX_DATASETS_LISTED = 300


def _wish_id(raw: str) -> int:
    if not raw.isdecimal() or len(raw) > 12:  # isdigit would let '²' through to int()
        raise NotFound(f"wish {raw!r} does not exist")
    return int(raw)


# --- the list -------------------------------------------------------------------------------

@router.get("/wishlist", response_class=HTMLResponse)
def wishlist_page(request: Request, who: Who, state: str = "", org: str = "",
                  done: str = "") -> HTMLResponse:
    state, org = state.strip()[:20], org.strip()[:64]

    def build(s: Session) -> tuple[str, dict[str, Any]]:
        names = access_service.org_names(s)
        voted = wishes.voted_by(s, who)
        rows = [{**wishes.wish_json(s, w), "voted": w.id in voted}
                for w in wishes.list_wishes(s, state=state or None, org=org or None)]
        return "wishlist.html", {
            "wishes": rows, "org_names": names, "state": state, "org": org,
            "states": [{"value": "", "text": "Any state"}] + [
                {"value": x, "text": x.capitalize(), "selected": x == state}
                for x in wishes.STATES],
            "orgs": [{"value": "", "text": "Any organisation"}] + [
                {"value": k, "text": v, "selected": k == org} for k, v in names.items()],
            "done": DONE.get(done), "signed_in": who is not None,
        }

    return show(request, build)


# --- a new wish -----------------------------------------------------------------------------

def _new_context(s: Session, form: dict[str, Any], errors: dict[str, str],
                 status: int = 200) -> tuple[str, dict[str, Any]]:
    ordered = {f: errors[f] for f in WISH_FIELDS if f in errors}
    chosen = set(form.get("orgs") or [])
    return "wish_new.html", {
        "form": form, "errors": ordered,
        "error_list": error_list(ordered, {"orgs": "orgs", "tier_needed": "tier_needed"}),
        "org_items": [{"value": k, "text": v, "checked": k in chosen}
                      for k, v in access_service.org_names(s).items()],
        "tiers": [{"value": t.name, "text": t.title, "hint": {"text": t.summary},
                   "checked": t.name == form.get("tier_needed", "safeguarded")}
                  for t in TIERS.values()],
        "status": status,
    }


@router.get("/wishlist/new", response_class=HTMLResponse)
def new_wish_form(request: Request, who: Who) -> Response:
    if who is None:
        return sign_in_redirect(request)
    return show(request, lambda s: _new_context(s, {}, {}))


@router.post("/wishlist/new", response_class=HTMLResponse)
async def create_wish(request: Request, who: Who) -> Response:
    got = await posted(request, who, "/wishlist/new")
    if isinstance(got, Response):
        return got
    raw, who = got
    form: dict[str, Any] = {f: value(raw, f, MAX_FIELD_CHARS) for f in WISH_FIELDS
                            if f != "orgs"}
    form["orgs"] = values(raw, "orgs", 20)
    state = hub(request)

    def create() -> int:
        with state.db.write() as s:
            return wishes.create_wish(
                s, state.key, who, title=form["title"], description=form["description"],
                orgs=form["orgs"], linkage=form["linkage"], purpose=form["purpose"],
                tier_needed=form["tier_needed"] or "safeguarded").id

    try:
        wish_id = await run_in_threadpool(create)
    except InvalidInput as exc:
        errors = field_errors(exc, WISH_FIELDS, "title")
        return await ashow(request, lambda s: _new_context(s, form, errors, 422))
    except NotFound as exc:  # an organisation that is not (or no longer) in the library
        errors = {"orgs": sentence(exc.message)}
        return await ashow(request, lambda s: _new_context(s, form, errors, 422))
    except NdlError as exc:
        return error_page(request, exc)
    return see_other(f"/wishlist/{wish_id}?done=created")


# --- one wish -------------------------------------------------------------------------------

def wish_context(s: Session, raw_id: str, who: Principal | None, *, done: str = "",
                 errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
                 status: int = 200) -> tuple[str, dict[str, Any]]:
    wish = wishes.get_wish(s, _wish_id(raw_id))
    names = access_service.org_names(s)
    steward = wishes.can_steward(who, wish)
    own: list[dict[str, Any]] = []
    if steward and who is not None:
        own = [{"value": d.id, "text": f"{d.title} ({d.id})"}
               for d in wishes.publishable_datasets(s, who, MAX_DATASETS_LISTED)]
    published = catalogue.find_dataset(s, wish.dataset_id) if wish.dataset_id else None
    errors = errors or {}
    return "wish.html", {
        "wish": wishes.wish_json(s, wish, with_comments=True), "org_names": names,
        "voted": wish.id in wishes.voted_by(s, who), "signed_in": who is not None,
        "steward": steward, "own_datasets": own,
        "dataset_href": links_for(published.id)["page"] if published else None,
        "done": DONE.get(done), "errors": errors, "error_list": error_list(errors),
        "form": form or {}, "status": status,
        "sign_in_href": f"/sign-in?next=/wishlist/{wish.id}",
    }


@router.get("/wishlist/{wish_id}", response_class=HTMLResponse)
def wish_page(request: Request, wish_id: str, who: Who, done: str = "") -> HTMLResponse:
    return show(request, lambda s: wish_context(s, wish_id, who, done=done))


async def _wish_post(request: Request, wish_id: str, who: Who, act: Any,
                     field: str) -> Response:
    """Post a form about one wish; on an input error show the wish with the message at
    ``field``. ``act(session, who, form)`` returns the ``done`` key and where to go."""
    got = await posted(request, who, f"/wishlist/{wish_id}")
    if isinstance(got, Response):
        return got
    form, who = got
    state = hub(request)
    kept = {field: value(form, "text" if field == "comment" else "dataset", MAX_FIELD_CHARS)}

    def run() -> str:
        with state.db.write() as s:
            result: str = act(s, who, form, _wish_id(wish_id))
            return result

    try:
        target = await run_in_threadpool(run)
    except (InvalidInput, NotFound) as exc:
        if isinstance(exc, NotFound) and field != "dataset-published":
            return error_page(request, exc)
        head, sep, rest = exc.message.partition(": ")
        errors = {field: sentence(rest if sep and head in ("text", "dataset") else exc.message)}
        status = exc.http_status
        return await ashow(request, lambda s: wish_context(
            s, wish_id, who, errors=errors, form=kept, status=status))
    except NdlError as exc:
        return error_page(request, exc)
    return see_other(target)


@router.post("/wishlist/{wish_id}/vote", response_class=HTMLResponse)
async def vote(request: Request, wish_id: str, who: Who) -> Response:
    def act(s: Session, who: Principal, form: Any, wid: int) -> str:
        up = value(form, "up", 5) != "0"
        wishes.vote(s, who, wid, up=up)
        back = safe_next(value(form, "back", 200) or f"/wishlist/{wid}")
        back = back if back.startswith("/wishlist") else f"/wishlist/{wid}"
        return f"{back.split('?')[0]}?done={'voted' if up else 'unvoted'}"

    return await _wish_post(request, wish_id, who, act, "vote")


@router.post("/wishlist/{wish_id}/comments", response_class=HTMLResponse)
async def add_comment(request: Request, wish_id: str, who: Who) -> Response:
    def act(s: Session, who: Principal, form: Any, wid: int) -> str:
        wishes.comment(s, who, wid, value(form, "text", MAX_FIELD_CHARS + 1))
        return f"/wishlist/{wid}?done=commented#comments"

    return await _wish_post(request, wish_id, who, act, "comment")


@router.post("/wishlist/{wish_id}/state", response_class=HTMLResponse)
async def set_state(request: Request, wish_id: str, who: Who) -> Response:
    """Mark planned (naming the dataset id it will have) or published (naming the dataset)."""
    state = hub(request)

    def act(s: Session, who: Principal, form: Any, wid: int) -> str:
        target, dataset = value(form, "state", 20), value(form, "dataset", 200)
        if target == "planned":
            wishes.plan(s, state.key, who, wid, dataset or None)
        else:
            wishes.set_state(s, state.key, who, wid, target, dataset or None)
        return f"/wishlist/{wid}?done={target}"

    # Which form's box an error belongs to is known only from the form itself.
    form = await request.form()
    field = "dataset-planned" if form.get("state") == "planned" else "dataset-published"
    return await _wish_post(request, wish_id, who, act, field)


# --- an organisation's demand dashboard -----------------------------------------------------

@router.get("/orgs/{org_id}", response_class=HTMLResponse)
def org_page(request: Request, org_id: str, _: Who) -> HTMLResponse:
    def build(s: Session) -> tuple[str, dict[str, Any]]:
        dash = wishes.dashboard(s, org_id)
        for d in dash["per_dataset"]:
            d["href"] = links_for(d["id"])["page"]
        return "org.html", {"dash": dash}

    return show(request, build)
