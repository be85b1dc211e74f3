"""The kiosk's languages: gettext catalogs through Flask-Babel, and the language switch.

The pages, their messages and the printed report are translated; the JSON API always answers in
English (clinic systems parse it) and stored values (labels, audit entries, CSV) stay English.
Which language a page uses: the one chosen with the header's switch (a cookie, so it survives
logging in and out), else the kiosk's DEFAULT_LANGUAGE (set at provisioning), else the browser's
Accept-Language, else English. Catalogs live in edge/webapp/translations (`make translations`).
"""

from __future__ import annotations

from dataclasses import dataclass

from babel import negotiate_locale
from flask import Blueprint, Flask, abort, current_app, has_request_context, redirect, request, url_for
from flask_babel import Babel, get_locale, gettext, lazy_gettext
from werkzeug.wrappers import Response

from edge.webapp.access.request_guard import is_api_request
from edge.webapp.views.auth import safe_next

SOURCE_LANGUAGE = "en"
COOKIE = "pneumoedge_lang"
COOKIE_MAX_AGE_S = 365 * 86400


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # in the language itself: a reader finds their own
    reviewed: bool  # False: the translation still awaits review by a clinician who speaks it


LANGUAGES = {
    language.code: language
    for language in (
        Language("en", "English", reviewed=True),
        Language("fr", "Français", reviewed=False),
        Language("pt", "Português", reviewed=False),
    )
}

#: The screener's labels as people read them; the stored and exported values stay English.
LABEL_TEXT = {
    "NORMAL": lazy_gettext("NORMAL"),
    "PNEUMONIA": lazy_gettext("PNEUMONIA"),
}
#: Staff roles as people read them; the stored values stay English.
ROLE_TEXT = {
    "staff": lazy_gettext("staff"),
    "admin": lazy_gettext("administrator"),
}
#: Audit log actions as people read them (English: the stored code with spaces); stored codes stay.
ACTION_TEXT = {
    "api_list_results": lazy_gettext("api list results"),
    "api_view_result": lazy_gettext("api view result"),
    "api_view_heatmap": lazy_gettext("api view heatmap"),
    "api_token_create": lazy_gettext("api token create"),
    "api_token_revoke": lazy_gettext("api token revoke"),
    "audit_chain_start": lazy_gettext("audit chain started"),
    "audit_protection_restored": lazy_gettext("audit protection put back"),
    "confirm": lazy_gettext("confirm"),
    "correct": lazy_gettext("correct"),
    "export_csv": lazy_gettext("export csv"),
    "export_dataset": lazy_gettext("export dataset"),
    "export_fhir": lazy_gettext("export fhir"),
    "login": lazy_gettext("login"),
    "login_failed": lazy_gettext("login failed"),
    "logout": lazy_gettext("logout"),
    "screen": lazy_gettext("screen"),
    "staff_add": lazy_gettext("staff add"),
    "staff_disable": lazy_gettext("staff disable"),
    "staff_enable": lazy_gettext("staff enable"),
    "staff_pin_reset": lazy_gettext("staff pin reset"),
    "view_audit": lazy_gettext("view audit"),
    "view_report": lazy_gettext("view report"),
    "view_result": lazy_gettext("view result"),
}
#: edge.screener.INTENDED_USE, marked here for extraction (the TensorFlow-free core knows no gettext);
#: a test keeps the two identical.
INTENDED_USE = lazy_gettext(
    "PneumoEdge is a screening aid for trained staff, not a diagnosis: "
    "every result must be reviewed by a clinician. "
    "It was trained and checked only on frontal chest X-rays of children aged 1 to 5 from one hospital."
)
#: edge.quality's refusals in plain words (quality.plain_words), marked here for the same reason; the
#: pages translate them with the `translated` filter, and a test keeps the copies identical.
REFUSAL_TEXTS = (
    lazy_gettext(
        "This is a colour picture, not an X-ray image. Load the X-ray file from the X-ray system; "
        "if you photograph a film, use a plain white light box and no coloured light."
    ),
    lazy_gettext(
        "The image is too small to read. Load the full-size X-ray file, not a thumbnail or a screenshot."
    ),
    lazy_gettext(
        "The image is too long and narrow to be a whole chest X-ray. Load the whole film, not a "
        "cut-out strip."
    ),
    lazy_gettext(
        "The image is blank or almost one shade all over. Check that you chose the right file and "
        "that the film shows the chest, then load it again."
    ),
    lazy_gettext(
        "The image is a negative (bones dark, air light). Export the X-ray again with bones white, "
        "then load it again."
    ),
    lazy_gettext(
        "The film is on its side or upside down. Turn it upright (head at the top), then load it again."
    ),
    lazy_gettext(
        "This does not look like a chest X-ray. Load the X-ray file of the front of the chest itself, "
        "not a photo, a screenshot or another picture."
    ),
    lazy_gettext(
        "This does not look like the chest X-rays the kiosk knows. Check that it is a front view of "
        "the chest, and load the X-ray file itself rather than a photo or a screenshot. If it is, "
        "the clinician reads this film without the kiosk."
    ),
    lazy_gettext("The kiosk cannot assess this image. Ask the clinician to read the film."),
)
#: edge.formats' file refusals in plain words (formats.plain_words), marked here for the same reason;
#: upload_checks.UploadError translates them, and a test keeps the copies identical.
FILE_REFUSAL_TEXTS = (
    lazy_gettext("The file is empty. Copy the X-ray file again from the X-ray system, then load it again."),
    lazy_gettext("The kiosk does not take this kind of file. Load the X-ray as a JPEG, PNG or DICOM file."),
    lazy_gettext(
        "The file's name does not match what is inside it. Export the X-ray again from the X-ray "
        "system, then load the new file."
    ),
    lazy_gettext(
        "This file is not an X-ray image. Choose the X-ray file itself (JPEG, PNG or DICOM), not a "
        "document or a report."
    ),
    lazy_gettext(
        "The kiosk cannot open this kind of picture. Export the X-ray again as JPEG, PNG or DICOM, "
        "then load it again."
    ),
    lazy_gettext(
        "The kiosk cannot open this kind of DICOM file. Export the X-ray again from the X-ray system "
        "as a single uncompressed image, or as JPEG or PNG."
    ),
    lazy_gettext(
        "The file is damaged or incomplete. Copy or export the X-ray again from the X-ray system, "
        "then load the new file."
    ),
    lazy_gettext(
        "The DICOM file holds no picture. Export the X-ray image itself from the X-ray system, then "
        "load it again."
    ),
    lazy_gettext(
        "The image is too big for the kiosk to open. Export the X-ray again at a smaller size, or as "
        "a JPEG, then load it again."
    ),
    lazy_gettext(
        "The kiosk cannot open this file. Load the X-ray again as a JPEG, PNG or DICOM file; if it is "
        "refused again, ask the technician."
    ),
)

babel = Babel()
bp = Blueprint("i18n", __name__)


def init_app(app: Flask) -> None:
    """Install Flask-Babel with the kiosk's locale choice, the switch and the template helpers."""
    default = app.config.get("DEFAULT_LANGUAGE") or None
    if default is not None and default not in LANGUAGES:
        raise ValueError(
            f"DEFAULT_LANGUAGE {default!r} is not one of the kiosk's languages: {', '.join(LANGUAGES)}"
        )
    babel.init_app(app, locale_selector=select_locale, default_locale=SOURCE_LANGUAGE)
    app.add_template_filter(label_text, "label")
    app.add_template_filter(role_text, "role")
    app.add_template_filter(translated, "translated")
    app.add_template_filter(action_text, "action")
    app.context_processor(_template_context)
    app.register_blueprint(bp)


def select_locale() -> str:
    """The switch's cookie, then DEFAULT_LANGUAGE, then Accept-Language, then English; the API: English."""
    if not has_request_context() or is_api_request():
        return SOURCE_LANGUAGE
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    default = current_app.config.get("DEFAULT_LANGUAGE")
    if default:
        return default
    # Babel's negotiation keeps the browser's order: "pt-BR, en;q=0.5" is Portuguese, not English.
    preferred = [value.lower() for value in request.accept_languages.values()]
    return negotiate_locale(preferred, list(LANGUAGES), sep="-") or SOURCE_LANGUAGE


def current_language() -> Language:
    locale = get_locale()
    return LANGUAGES.get(locale.language if locale else SOURCE_LANGUAGE, LANGUAGES[SOURCE_LANGUAGE])


def label_text(label: str) -> str:
    """A screener label ('PNEUMONIA') in the page's language; anything else as it is."""
    return str(LABEL_TEXT[label]) if label in LABEL_TEXT else label


def translated(text: str) -> str:
    """A text marked elsewhere (REFUSAL_TEXTS, FILE_REFUSAL_TEXTS) in the page's language; unknown
    text as it is."""
    return gettext(text)


def action_text(action: str) -> str:
    """An audit action code ('view_result') as people read it, in the page's language."""
    return str(ACTION_TEXT[action]) if action in ACTION_TEXT else action.replace("_", " ")


def role_text(role: str) -> str:
    return str(ROLE_TEXT[role]) if role in ROLE_TEXT else role


def _template_context() -> dict[str, object]:
    return {
        "language": current_language(),
        "languages": LANGUAGES.values(),
        "here": _here(),
        "intended_use": INTENDED_USE,
    }


def _here() -> str:
    """Where the switch returns to: this page, or the home page after a form (no GET to repeat)."""
    if request.method != "GET":
        return url_for("pages.index")
    return request.full_path.rstrip("?")


@bp.post("/language")
def set_language() -> Response:
    """The header's switch: remember the language in a cookie and go back to the page it was on."""
    code = request.form.get("lang", "")
    if code not in LANGUAGES:
        abort(
            400,
            description=gettext(
                "Choose one of the kiosk's languages: %(codes)s.", codes=", ".join(LANGUAGES)
            ),
        )
    response = redirect(safe_next(request.form.get("next", "")), code=303)
    response.set_cookie(
        COOKIE,
        code,
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="Strict",
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
    )
    return response
