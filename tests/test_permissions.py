"""The README's permission table, walked: every URL mediaopt adds, and every POST that
changes something, for six kinds of user.

The URLs come from the resolver (every admin URL named after a model of the mediaopt,
metadata or billing apps, and the media view), so a new page without a row in ``PAGES``
fails here. Every denial must leave the database as it was: no job, item, ledger entry,
hold, revision, image, or change to the account or the settings. Every allowed POST must
change something, so a check that denies everyone is caught too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from billing import ledger
from billing.models import Account, CreditHold, LedgerEntry, RequestMeter
from mediaopt.library.models import MediaAsset
from metadata import bulk, proposals
from metadata.models import (
    ItemState,
    JobItem,
    JobKind,
    JobState,
    MetadataRevision,
    Proposal,
    ProposalReason,
    RegenerationJob,
    Settings,
)
from metadata.strategies import FieldChange, Plan
from tests import factories, revision_builders

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

APPS = ("mediaopt", "metadata", "billing")

# -- who ---------------------------------------------------------------------------------

SUPERUSER = "superuser"
VIEWER = "viewer"  # view permissions only
EDITOR = "editor"  # may upload and edit images, not run regeneration (no paid calls)
NO_CREDIT = "no_credit"  # every permission but adding credits and changing the plan
NON_STAFF = "non_staff"  # every permission, but not staff: the admin is closed to them
ANONYMOUS = "anonymous"
ROLES = (SUPERUSER, VIEWER, EDITOR, NO_CREDIT, NON_STAFF, ANONYMOUS)
STAFF = frozenset({SUPERUSER, VIEWER, EDITOR, NO_CREDIT})
NOBODY: frozenset[str] = frozenset()

CREDIT_PERMISSIONS = {"grant_credits", "change_account_plan"}
EDITOR_PERMISSIONS = {"add_mediaasset", "change_mediaasset"}


def app_permissions() -> list[Permission]:
    return list(Permission.objects.filter(content_type__app_label__in=APPS))


def make_user(role: str) -> User | None:
    if role == ANONYMOUS:
        return None
    if role == SUPERUSER:
        return User.objects.create_superuser(role, password=None)
    # No password: force_login needs none, and hashing one costs a tenth of a second.
    user = User.objects.create_user(role, password=None, is_staff=role != NON_STAFF)
    everything = app_permissions()
    if role == VIEWER:
        granted = [p for p in everything if p.codename.startswith("view_")]
    elif role == EDITOR:
        granted = [
            p
            for p in everything
            if p.codename.startswith("view_") or p.codename in EDITOR_PERMISSIONS
        ]
    elif role == NO_CREDIT:
        granted = [p for p in everything if p.codename not in CREDIT_PERMISSIONS]
    else:
        granted = everything
    user.user_permissions.add(*granted)
    return user


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# -- what exists -------------------------------------------------------------------------


@dataclass
class World:
    """One of everything a page or an action can be about."""

    asset: MediaAsset
    old_revision: MetadataRevision
    running: RegenerationJob
    paused: RegenerationJob
    finished: RegenerationJob  # wrote a revision, and has a failed item to retry
    draft: RegenerationJob  # the acting user's bulk selection, not yet confirmed
    trial: RegenerationJob  # a finished "try first" job
    account: Account
    settings: Settings
    entry: LedgerEntry
    hold: CreditHold
    meter: RequestMeter
    proposal: Proposal  # waiting for review, for the spare image


def build_world(user: User | None, media_root) -> World:
    asset, spare = revision_builders.imported(2, alt_text="Old words")
    old_revision = asset.current_revision
    finished = revision_builders.finished_job(created_by=user)
    revision_builders.generated(asset, finished, alt_text="New words")
    JobItem.objects.create(job=finished, asset=spare, state=ItemState.FAILED, error="it broke")
    factories.recount_jobs(finished)
    account = Account.objects.current()
    running = RegenerationJob.objects.create(
        kind=JobKind.BULK, state=JobState.RUNNING, account=account, created_by=user
    )
    paused = RegenerationJob.objects.create(
        kind=JobKind.BULK, state=JobState.PAUSED, account=account, created_by=user
    )
    draft = bulk.draft_bulk(actor=user, asset_ids=[asset.pk, spare.pk])
    trial = revision_builders.finished_job(
        created_by=user, scope={"ids": [asset.pk, spare.pk]}, options={"trial": 20, "review": True}
    )
    hold = ledger.hold(
        account=account,
        amount=1,
        idempotency_key="hold:world",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    meter = RequestMeter.objects.create(account=account, month=ledger.month_start())
    (media_root / "seen.jpg").write_bytes(factories.jpeg())
    spare.refresh_from_db()
    proposal = proposals.propose(
        asset=spare,
        plan=Plan(changes={"alt_text": FieldChange("Proposed words", "ai")}),
        based_on_revision_id=spare.current_revision_id,
        reason=ProposalReason.REVIEW,
    )
    return World(
        asset=asset,
        old_revision=old_revision,
        running=running,
        paused=paused,
        finished=finished,
        draft=draft,
        trial=trial,
        account=account,
        settings=Settings.objects.current(),
        entry=LedgerEntry.objects.order_by("pk").first(),
        hold=hold,
        meter=meter,
        proposal=proposal,
    )


def snapshot() -> dict:
    """Everything a denied request must leave as it was."""
    return {
        "jobs": sorted(RegenerationJob.objects.values_list("pk", "kind", "state")),
        "items": sorted(JobItem.objects.values_list("pk", "state")),
        "ledger": LedgerEntry.objects.count(),
        "holds": sorted(CreditHold.objects.values_list("pk", "state")),
        "revisions": MetadataRevision.objects.count(),
        "assets": sorted(MediaAsset.objects.values_list("pk", "alt_text", "current_revision")),
        "accounts": sorted(
            Account.objects.values_list(
                "pk", "name", "plan", "mode", "byok_monthly_cap_requests", "balance"
            )
        ),
        "settings": sorted(Settings.objects.values_list("pk", "language", "model")),
        "proposals": sorted(Proposal.objects.values_list("pk", "state")),
    }


@pytest.fixture(params=ROLES)
def role(request) -> str:
    return request.param


@pytest.fixture
def acting(role, media_root):
    user = make_user(role)
    return role, client_for(user), build_world(user, media_root)


# -- every page: who may open it ----------------------------------------------------------

POST_ONLY = "post only"  # 405 to a GET, whoever asks; its POST is in ACTIONS below

# URL name -> who may open it (a 200, an htmx 286, or a redirect that is not to the login).
# Who is denied gets 403; non-staff and anonymous users are sent to the login page.
PAGES: dict[str, frozenset[str] | str] = {
    "media": STAFF,
    "mediaopt_mediaasset_changelist": STAFF,
    # The admin's "Add" only redirects to the upload page, which checks add permission.
    "mediaopt_mediaasset_add": STAFF,
    "mediaopt_mediaasset_upload": frozenset({SUPERUSER, EDITOR, NO_CREDIT}),
    "mediaopt_mediaasset_regenerate_bulk": frozenset({SUPERUSER, NO_CREDIT}),
    "mediaopt_mediaasset_regenerate_all": POST_ONLY,
    "mediaopt_mediaasset_after_trial": POST_ONLY,
    "mediaopt_mediaasset_regenerate": POST_ONLY,
    "mediaopt_mediaasset_metadata_history": STAFF,
    "mediaopt_mediaasset_metadata_compare": STAFF,
    "mediaopt_mediaasset_metadata_restore": frozenset({SUPERUSER, EDITOR, NO_CREDIT}),
    "mediaopt_mediaasset_job_panel": STAFF,
    "mediaopt_mediaasset_list_row": STAFF,
    "mediaopt_mediaasset_history": STAFF,
    "mediaopt_mediaasset_delete": frozenset({SUPERUSER, NO_CREDIT}),
    "mediaopt_mediaasset_change": STAFF,
    "metadata_settings_jobs": STAFF,
    "metadata_settings_changelist": STAFF,
    "metadata_settings_add": NOBODY,
    "metadata_settings_history": STAFF,
    "metadata_settings_delete": NOBODY,
    "metadata_settings_change": STAFF,
    "metadata_metadatarevision_changelist": STAFF,
    "metadata_metadatarevision_add": NOBODY,
    "metadata_metadatarevision_history": STAFF,
    "metadata_metadatarevision_delete": NOBODY,
    "metadata_metadatarevision_change": STAFF,
    "metadata_regenerationjob_progress": STAFF,
    "metadata_regenerationjob_failures": STAFF,
    "metadata_regenerationjob_pause": POST_ONLY,
    "metadata_regenerationjob_resume": POST_ONLY,
    "metadata_regenerationjob_cancel": POST_ONLY,
    "metadata_regenerationjob_retry_failed": POST_ONLY,
    "metadata_regenerationjob_undo": frozenset({SUPERUSER, EDITOR, NO_CREDIT}),
    "metadata_regenerationjob_changelist": STAFF,
    "metadata_regenerationjob_add": NOBODY,
    "metadata_regenerationjob_history": STAFF,
    "metadata_regenerationjob_delete": NOBODY,
    "metadata_regenerationjob_change": STAFF,
    "metadata_proposal_changelist": STAFF,
    "metadata_proposal_card": STAFF,
    "metadata_proposal_edit": frozenset({SUPERUSER, EDITOR, NO_CREDIT}),
    "metadata_proposal_approve": POST_ONLY,
    "metadata_proposal_reject": POST_ONLY,
    "metadata_proposal_regenerate": POST_ONLY,
    "metadata_proposal_decide": POST_ONLY,
    "billing_account_grant": frozenset({SUPERUSER}),
    "billing_account_changelist": STAFF,
    "billing_account_add": frozenset({SUPERUSER, NO_CREDIT}),
    "billing_account_history": STAFF,
    "billing_account_delete": NOBODY,
    "billing_account_change": STAFF,
    **{
        f"billing_ledgerentry_{view}": NOBODY if view in {"add", "delete"} else STAFF
        for view in ("changelist", "add", "history", "delete", "change")
    },
    # The ledger's workings: superusers only, whatever permissions one has.
    **{
        f"billing_{model}_{view}": NOBODY if view in {"add", "delete"} else frozenset({SUPERUSER})
        for model in ("credithold", "requestmeter")
        for view in ("changelist", "add", "history", "delete", "change")
    },
}


def mediaopt_urls() -> list[tuple[str, str]]:
    """(namespaced name, name) of every URL pattern named after a model of our apps."""
    models = {
        f"{app}_{model._meta.model_name}"
        for app in APPS
        for model in apps.get_app_config(app).get_models()
    }
    found = []

    def walk(resolver: URLResolver, namespace: str) -> None:
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and pattern.name:
                name = pattern.name
                ours = name == "media" or any(name.startswith(f"{m}_") for m in models)
                if ours:
                    found.append((f"{namespace}:{name}" if namespace else name, name))

    walk(get_resolver(), "")
    return found


def url_of(full: str, world: World) -> str:
    name = full.split(":")[-1]
    if name == "media":
        return reverse("media", kwargs={"path": "seen.jpg"})
    model = name.split("_")[1]
    object_id = {
        "mediaasset": world.asset.pk,
        "settings": world.settings.pk,
        "metadatarevision": world.old_revision.pk,
        "regenerationjob": world.finished.pk,
        "account": world.account.pk,
        "ledgerentry": world.entry.pk,
        "credithold": world.hold.pk,
        "requestmeter": world.meter.pk,
        "proposal": world.proposal.pk,
    }[model]
    for kwargs in (
        {},
        {"object_id": object_id},
        {"job_id": world.draft.pk},
        {"object_id": object_id, "revision_id": world.old_revision.pk},
    ):
        try:
            url = reverse(full, kwargs=kwargs)
        except NoReverseMatch:  # not this URL's parameters: try the next set
            continue
        if name.endswith("_metadata_compare"):
            url += f"?from={world.old_revision.pk}"
        return url
    raise AssertionError(f"cannot build {full}")


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and "/login/" in response["Location"]


def test_every_url_has_a_row_in_the_table():
    names = {name for _, name in mediaopt_urls()}
    assert names == set(PAGES), (
        f"not in the table: {sorted(names - set(PAGES))}; gone: {sorted(set(PAGES) - names)}"
    )


def test_every_page_opens_for_exactly_who_may_open_it(acting):
    role, client, world = acting
    before = snapshot()
    wrong = []
    for full, name in mediaopt_urls():
        url = url_of(full, world)
        response = client.get(url)
        allowed = PAGES[name]
        if role not in STAFF:
            ok = is_login_redirect(response)
        elif allowed == POST_ONLY:
            ok = response.status_code == 405
        elif role in allowed:
            ok = response.status_code in {200, 286, 302} and not is_login_redirect(response)
        else:
            ok = response.status_code == 403
        if not ok:
            wrong.append(f"{url} -> {response.status_code}")
    assert wrong == []
    assert snapshot() == before


# -- every action: who may do it, and a denial changes nothing ----------------------------


@dataclass(frozen=True)
class Action:
    """A POST, who may make it, and (for those who may) proof that it did something."""

    allowed: frozenset[str]
    post: Callable[[Client, World], object]
    did_it: Callable[[World, dict], bool] | None = None


def changed(before: dict, *keys: str) -> bool:
    now = snapshot()
    return any(now[key] != before[key] for key in keys)


def _regenerate(client: Client, world: World):
    return client.post(
        reverse("admin:mediaopt_mediaasset_regenerate", args=[world.asset.pk]),
        {"manual": "replace"},
    )


def _bulk_action(client: Client, world: World):
    return client.post(
        reverse("admin:mediaopt_mediaasset_changelist"),
        {"action": "regenerate_with_ai", "_selected_action": [world.asset.pk]},
    )


def _confirm(button: str) -> Callable[[Client, World], object]:
    def post(client: Client, world: World):
        row = Settings.objects.current()
        return client.post(
            reverse("admin:mediaopt_mediaasset_regenerate_bulk", args=[world.draft.pk]),
            {
                "metadata_fields": list(row.default_fields),
                "strategy": row.default_strategy,
                "language": row.language,
                "on_shortfall": bulk.PARTIAL,
                button: "yes",
            },
        )

    return post


def _job_control(view: str, job: str, **data) -> Callable[[Client, World], object]:
    def post(client: Client, world: World):
        target = getattr(world, job)
        return client.post(
            reverse(f"admin:metadata_regenerationjob_{view}", args=[target.pk]), data
        )

    return post


def _restore(client: Client, world: World):
    return client.post(
        reverse(
            "admin:mediaopt_mediaasset_metadata_restore",
            args=[world.asset.pk, world.old_revision.pk],
        ),
        {"fields": ["alt_text"], "based_on_revision": world.asset.current_revision_id},
    )


def _edit(client: Client, world: World):
    asset = world.asset
    asset.refresh_from_db()
    return client.post(
        reverse("admin:mediaopt_mediaasset_change", args=[asset.pk]),
        {
            "alt_text": "Typed by hand",
            "title": asset.title,
            "caption": asset.caption,
            "description": asset.description,
            "keywords": asset.keywords,
            "based_on_revision": asset.current_revision_id,
            "revisions-TOTAL_FORMS": "0",
            "revisions-INITIAL_FORMS": "0",
        },
    )


def _grant(client: Client, world: World):
    return client.post(
        reverse("admin:billing_account_grant", args=[world.account.pk]),
        {"amount": 7, "reason": "invoice 9"},
    )


def _change_plan(client: Client, world: World):
    return client.post(
        reverse("admin:billing_account_change", args=[world.account.pk]),
        {"name": world.account.name, "plan": "free", "mode": "byok"},
    )


def _settings(client: Client, world: World):
    row = world.settings
    return client.post(
        reverse("admin:metadata_settings_change", args=[row.pk]),
        {
            "generate_on_upload": "on",
            "heuristic_fallback": "on",
            "default_fields": list(row.default_fields),
            "default_strategy": row.default_strategy,
            "language": "de",
            "site_context": row.site_context,
            "model": row.model,
            "detail": row.detail,
            "requests_per_minute": row.requests_per_minute,
            "tokens_per_minute": row.tokens_per_minute,
            "revisions_keep": row.revisions_keep,
            "revisions_keep_days": row.revisions_keep_days,
        },
    )


def _upload(client: Client, world: World):
    upload = SimpleUploadedFile(
        "golden-retriever-on-the-beach.jpg", factories.jpeg(40, 30), content_type="image/jpeg"
    )
    return client.post(reverse("admin:mediaopt_mediaasset_upload"), {"files": [upload]})


def _upload_started_ai(world: World, before: dict) -> bool:
    return RegenerationJob.objects.filter(kind=JobKind.UPLOAD).exists()


RUNNERS = frozenset({SUPERUSER, NO_CREDIT})
EDITORS = frozenset({SUPERUSER, EDITOR, NO_CREDIT})

ACTIONS: dict[str, Action] = {
    "regenerate": Action(RUNNERS, _regenerate, lambda w, b: changed(b, "jobs", "items")),
    "bulk action": Action(RUNNERS, _bulk_action, lambda w, b: changed(b, "jobs")),
    "regenerate all": Action(
        RUNNERS,
        lambda c, w: c.post(reverse("admin:mediaopt_mediaasset_regenerate_all"), {"scope": "all"}),
        lambda w, b: changed(b, "jobs"),
    ),
    "confirm bulk": Action(RUNNERS, _confirm("_confirm"), lambda w, b: changed(b, "jobs")),
    "try first": Action(RUNNERS, _confirm("_try_first"), lambda w, b: changed(b, "jobs")),
    "run the remaining": Action(
        RUNNERS,
        lambda c, w: c.post(
            reverse("admin:mediaopt_mediaasset_after_trial", args=[w.trial.pk]), {"next": "rest"}
        ),
        lambda w, b: changed(b, "jobs"),
    ),
    "retry failed": Action(
        RUNNERS, _job_control("retry_failed", "finished"), lambda w, b: changed(b, "jobs")
    ),
    "pause": Action(RUNNERS, _job_control("pause", "running"), lambda w, b: changed(b, "jobs")),
    "resume": Action(RUNNERS, _job_control("resume", "paused"), lambda w, b: changed(b, "jobs")),
    "cancel": Action(
        RUNNERS, _job_control("cancel", "running", confirm="yes"), lambda w, b: changed(b, "jobs")
    ),
    "undo": Action(
        EDITORS,
        _job_control("undo", "finished", seen_undo=""),
        lambda w, b: changed(b, "jobs"),
    ),
    "restore": Action(EDITORS, _restore, lambda w, b: changed(b, "revisions")),
    "edit": Action(EDITORS, _edit, lambda w, b: changed(b, "revisions")),
    "approve proposal": Action(
        EDITORS,
        lambda c, w: c.post(reverse("admin:metadata_proposal_approve", args=[w.proposal.pk])),
        lambda w, b: changed(b, "proposals", "revisions"),
    ),
    "reject proposal": Action(
        EDITORS,
        lambda c, w: c.post(reverse("admin:metadata_proposal_reject", args=[w.proposal.pk])),
        lambda w, b: changed(b, "proposals"),
    ),
    "approve selected": Action(
        EDITORS,
        lambda c, w: c.post(
            reverse("admin:metadata_proposal_decide"),
            {"action": "approve_selected", "ids": [w.proposal.pk]},
        ),
        lambda w, b: changed(b, "proposals", "revisions"),
    ),
    "regenerate proposal": Action(
        RUNNERS,
        lambda c, w: c.post(reverse("admin:metadata_proposal_regenerate", args=[w.proposal.pk])),
        lambda w, b: changed(b, "jobs"),
    ),
    "add credits": Action(frozenset({SUPERUSER}), _grant, lambda w, b: changed(b, "ledger")),
    "change plan and mode": Action(
        frozenset({SUPERUSER}), _change_plan, lambda w, b: changed(b, "accounts")
    ),
    "settings page": Action(
        frozenset({SUPERUSER, NO_CREDIT}), _settings, lambda w, b: changed(b, "settings")
    ),
    # Upload itself needs add permission; AI on upload needs run_regeneration as well.
    "upload with AI": Action(RUNNERS, _upload, _upload_started_ai),
}


@pytest.mark.parametrize("name", ACTIONS)
def test_each_action_is_allowed_to_exactly_who_may_do_it(name, acting):
    role, client, world = acting
    action = ACTIONS[name]
    before = snapshot()

    response = action.post(client, world)

    if role in action.allowed:
        assert response.status_code in {200, 302}, response.status_code
        assert action.did_it(world, before), f"{role} may {name}, but nothing happened"
        return
    if name == "upload with AI" and role == EDITOR:
        return  # the upload is theirs to make: see the test below
    if role not in STAFF:
        assert is_login_redirect(response)
    elif name == "bulk action":
        assert response.status_code == 200  # not offered: the changelist comes back
    elif name == "change plan and mode" and role == NO_CREDIT:
        assert response.status_code == 302  # the fields are not in the form; the rest saves
    else:
        assert response.status_code == 403, response.status_code
    assert snapshot() == before


def test_an_upload_without_run_regeneration_gets_no_ai_and_says_so(media_root):
    editor = make_user(EDITOR)
    client = client_for(editor)
    before_ledger = LedgerEntry.objects.count()

    response = _upload(client, None)  # type: ignore[arg-type]

    assert response.status_code == 302
    asset = MediaAsset.objects.get()
    assert not RegenerationJob.objects.exists() and not JobItem.objects.exists()
    assert not CreditHold.objects.exists() and LedgerEntry.objects.count() == before_ledger
    # The heuristic's values, from the telling file name, written at once.
    assert (asset.alt_text, asset.alt_text_source) == ("Golden retriever on the beach", "heuristic")
    assert "ai" not in asset.sources().values()
    message = [str(m) for m in response.wsgi_request._messages]
    assert len(message) == 1
    assert "1 image uploaded; no AI metadata, because your account may not start" in message[0]


def test_the_regenerate_button_is_shown_only_to_those_who_may_run_jobs(media_root):
    asset = factories.bare_assets(1)[0]
    page = reverse("admin:mediaopt_mediaasset_change", args=[asset.pk])
    regenerate = reverse("admin:mediaopt_mediaasset_regenerate", args=[asset.pk])

    assert regenerate not in client_for(make_user(EDITOR)).get(page).content.decode()
    assert regenerate in client_for(make_user(NO_CREDIT)).get(page).content.decode()


@pytest.mark.parametrize("name", ["pause", "resume", "cancel", "retry failed"])
def test_controlling_a_job_needs_seeing_it_too(name, media_root):
    """run_regeneration without view permission on jobs: no blind pause or cancel."""
    user = User.objects.create_user("blind", password=None, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="run_regeneration"))
    client = client_for(user)
    world = build_world(user, media_root)
    before = snapshot()

    response = ACTIONS[name].post(client, world)

    assert response.status_code == 403
    assert snapshot() == before
