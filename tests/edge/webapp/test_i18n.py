"""The kiosk's languages: catalogs complete and in step with the code, and the language switch.

The catalogs are checked as files (every text extracted from the code is in the template and
translated, placeholders and markup kept, the compiled .mo equal to its .po, the review status
in the header); the switch through real requests on the app.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

import edge.webapp
from edge import formats, kiosk_settings, quality
from edge.kermany import LABELS
from edge.screener import INTENDED_USE
from edge.webapp.display import i18n
from edge.webapp.display.i18n import COOKIE, LANGUAGES, SOURCE_LANGUAGE
from edge.webapp.records import data_folder

from .bad_uploads import CATALOGUE, BadUpload
from .helpers import ADMIN, ADMIN_PIN, NURSE, NURSE_PIN, AppFactory, add_staff, audit_rows, login, post_file

REPO = Path(__file__).resolve().parents[3]
WEBAPP = Path(edge.webapp.__file__).parent
TRANSLATIONS = WEBAPP / "translations"
TRANSLATED = [code for code in LANGUAGES if code != SOURCE_LANGUAGE]
#: printf placeholders as Python's % operator reads them: %(name)s, %d, %.1f, %%.
PLACEHOLDER = re.compile(r"%(?:\([A-Za-z_]\w*\))?[-#0 +]*\d*(?:\.\d+)?[sdifr%]")
TAG = re.compile(r"</?[A-Za-z][^>]*>")
REVIEW_PENDING = "CLINICAL REVIEW PENDING"
FRENCH_INTENDED_USE = "PneumoEdge est une aide au dépistage"


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as file:
        return read_po(file)


def template() -> Catalog:
    return read_catalog(TRANSLATIONS / "messages.pot")


def catalog(code: str) -> Catalog:
    return read_catalog(TRANSLATIONS / code / "LC_MESSAGES" / "messages.po")


def entries(cat: Catalog) -> dict[str | tuple[str, ...], Message]:
    return {
        message.id if isinstance(message.id, str) else tuple(message.id): message
        for message in cat
        if message.id
    }


def forms(message: Message) -> list[str]:
    return [message.string] if isinstance(message.string, str) else list(message.string)


def ids(message: Message) -> list[str]:
    return [message.id] if isinstance(message.id, str) else list(message.id)


def test_the_template_holds_exactly_the_texts_marked_in_the_code() -> None:
    """Run `make translations` when this fails: a text was marked, changed or removed since."""
    method_map, options_map = parse_mapping_cfg((REPO / "babel.cfg").open())
    keywords = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
    marked = {
        message if isinstance(message, str) else tuple(message)
        for _file, _line, message, _comments, _context in extract_from_dir(
            WEBAPP, method_map, options_map, keywords=keywords
        )
    }
    assert marked, "nothing was extracted: is babel.cfg read from the right folder?"
    assert set(entries(template())) == marked


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_text_is_translated_and_none_is_fuzzy(code: str) -> None:
    translated = entries(catalog(code))
    assert set(translated) == set(entries(template())), "run `make translations`, then translate"
    untranslated = [key for key, message in translated.items() if not all(forms(message))]
    fuzzy = [key for key, message in translated.items() if message.fuzzy]
    assert untranslated == [] and fuzzy == []


@pytest.mark.parametrize("code", TRANSLATED)
def test_translations_keep_the_placeholders_and_the_markup(code: str) -> None:
    cat = catalog(code)
    for message in entries(cat).values():
        wanted = {p for text in ids(message) for p in PLACEHOLDER.findall(text)}
        for form in forms(message):
            # A plural's singular may spell out "one" instead of its number: a subset is enough.
            placeholders = set(PLACEHOLDER.findall(form))
            assert placeholders <= wanted and (message.pluralizable or placeholders == wanted), (
                message.id,
                form,
            )
            assert sorted(TAG.findall(form)) == sorted(TAG.findall(ids(message)[0])), (message.id, form)
    assert [(message.id, errors) for message, errors in cat.check()] == []  # Babel's own format checks


@pytest.mark.parametrize("code", TRANSLATED)
def test_the_compiled_catalog_is_in_step_with_its_source(code: str) -> None:
    """The kiosk reads the .mo; run `make translations` after editing a .po."""
    folder = TRANSLATIONS / code / "LC_MESSAGES"
    with (folder / "messages.mo").open("rb") as file:
        compiled = {key: forms(message) for key, message in entries(read_mo(file)).items()}
    source = {key: forms(message) for key, message in entries(catalog(code)).items()}
    assert compiled == source


@pytest.mark.parametrize("code", TRANSLATED)
def test_each_catalog_says_whether_a_clinician_reviewed_it(code: str) -> None:
    pending = REVIEW_PENDING in (catalog(code).header_comment or "")
    assert pending == (not LANGUAGES[code].reviewed)


def test_marked_copies_match_what_they_translate() -> None:
    assert str(i18n.INTENDED_USE) == INTENDED_USE  # outside a request: the English text
    refusals = {*quality.PLAIN_WORDS.values(), *quality.plain_words([])}
    assert {str(text) for text in i18n.REFUSAL_TEXTS} == refusals
    file_refusals = {*formats.PLAIN_WORDS.values(), formats.plain_words("a_code_added_later")}
    assert {str(text) for text in i18n.FILE_REFUSAL_TEXTS} == file_refusals
    assert set(i18n.LABEL_TEXT) == set(LABELS)
    assert set(LANGUAGES) == set(kiosk_settings.LANGUAGES)
    assert {path.parent.parent.name for path in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")} == set(
        TRANSLATED
    )


def switch(client: FlaskClient, code: str, next_page: str = "/login") -> None:
    response = client.post("/language", data={"lang": code, "next": next_page})
    assert response.status_code == 303 and response.headers["Location"] == next_page


def test_the_switch_turns_the_login_page_french_and_it_stays_so(app: Flask) -> None:
    add_staff(app, NURSE, NURSE_PIN)
    browser = app.test_client()
    assert 'lang="en"' in browser.get("/login").text and "Your PIN" in browser.get("/login").text
    switch(browser, "fr")
    page = browser.get("/login").text
    assert '<html lang="fr">' in page
    assert "Votre code PIN" in page and "Se connecter" in page and "Your PIN" not in page
    assert FRENCH_INTENDED_USE in page and "Traduction en attente de relecture clinique." in page
    assert login(browser).status_code == 302  # logging in keeps the language: it is not in the session
    home = browser.get("/").text
    assert "Nouvelle radio" in home and "Historique" in home and FRENCH_INTENDED_USE in home
    browser.post("/logout")
    assert "Votre nom" in browser.get("/login").text


def test_portuguese_pages_say_their_review_is_pending_and_english_does_not(app: Flask) -> None:
    browser = app.test_client()
    add_staff(app, NURSE, NURSE_PIN)
    switch(browser, "pt")
    page = browser.get("/login").text
    assert "O seu PIN" in page and "Tradução a aguardar revisão clínica." in page
    assert "rastreio" in page  # the intended-use statement
    switch(browser, "en")
    page = browser.get("/login").text
    assert "Your PIN" in page and 'id="review-note"' not in page


def test_messages_from_the_code_follow_the_language(admin_client: FlaskClient) -> None:
    switch(admin_client, "fr", "/staff")
    page = admin_client.post("/staff", data={"name": "Ana Lima", "pin": "123456", "pin_again": "654321"})
    assert page.status_code == 400
    assert "Les deux codes PIN diffèrent ; saisissez deux fois le même code." in page.text
    weak = admin_client.post("/staff", data={"name": "Ana Lima", "pin": "12", "pin_again": "12"})
    assert "Un code PIN comporte 6 à 12 chiffres." in weak.text
    assert "Comptes du personnel" in admin_client.get("/staff").text


@pytest.mark.parametrize(
    ("header", "expected"),
    [("fr-FR,fr;q=0.9", "fr"), ("pt-BR, en;q=0.5", "pt"), ("de-DE, de", "en"), ("", "en")],
)
def test_without_a_choice_the_browser_language_decides(app: Flask, header: str, expected: str) -> None:
    page = app.test_client().get("/login", headers={"Accept-Language": header})
    assert f'<html lang="{expected}">' in page.text


def test_the_kiosk_default_comes_before_the_browser_and_the_switch_before_both(make_app: AppFactory) -> None:
    app = make_app(DEFAULT_LANGUAGE="pt")
    browser = app.test_client()
    assert '<html lang="pt">' in browser.get("/login", headers={"Accept-Language": "fr"}).text
    switch(browser, "fr")
    assert '<html lang="fr">' in browser.get("/login", headers={"Accept-Language": "en"}).text


def test_an_unknown_default_language_stops_the_kiosk_at_start(make_app: AppFactory, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DEFAULT_LANGUAGE 'de'"):
        make_app(DEFAULT_LANGUAGE="de")
    instance_file = tmp_path / "kiosk.py"
    instance_file.write_text('DEFAULT_LANGUAGE = "de"\n')
    with pytest.raises(kiosk_settings.SettingsError, match="DEFAULT_LANGUAGE in"):
        kiosk_settings.load(instance_file, {})


def test_the_switch_refuses_an_unknown_language_and_never_leaves_the_kiosk(app: Flask) -> None:
    browser = app.test_client()
    refused = browser.post("/language", data={"lang": "xx", "next": "/login"})
    assert refused.status_code == 400 and COOKIE not in refused.headers.get("Set-Cookie", "")
    assert "en, fr, pt" in refused.text
    offsite = browser.post("/language", data={"lang": "fr", "next": "//evil.example/"})
    assert offsite.status_code == 303 and offsite.headers["Location"] == "/"
    cookie = offsite.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_switch_needs_the_form_token(make_app: AppFactory) -> None:
    browser = make_app(WTF_CSRF_ENABLED=True).test_client()
    assert browser.post("/language", data={"lang": "fr", "next": "/login"}).status_code == 400
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text)
    assert token is not None
    answer = browser.post("/language", data={"lang": "fr", "next": "/login", "csrf_token": token.group(1)})
    assert answer.status_code == 303


def test_the_api_answers_in_english_whatever_the_switch_says(app: Flask) -> None:
    french = {"Cookie": f"{COOKIE}=fr"}
    with app.test_request_context("/api/v1/results", headers=french):
        assert str(data_folder.STORAGE_FULL_MESSAGE).startswith("The kiosk's storage is full")
    with app.test_request_context("/", headers=french):
        assert str(data_folder.STORAGE_FULL_MESSAGE).startswith("Le stockage de la borne est plein")


def test_a_logged_in_page_returns_to_itself_after_the_switch(app: Flask) -> None:
    add_staff(app, ADMIN, ADMIN_PIN, "admin")
    browser = app.test_client()
    login(browser, ADMIN, ADMIN_PIN)
    page = browser.get("/staff?x=1").text
    assert 'name="next" value="/staff?x=1"' in page


def test_result_and_history_pages_in_french(client: FlaskClient, small_xray: bytes) -> None:
    switch(client, "fr", "/")
    location = post_file(client, "/assess", small_xray, case_ref="WARD3-0042").headers["Location"]
    page = client.get(location).text
    assert '<html lang="fr">' in page
    assert "Probabilité de pneumonie" in page and "Seuil opérationnel" in page
    assert re.search(rf'id="aid">{FRENCH_INTENDED_USE}', page)
    assert re.search(r'id="label">(NORMAL|PNEUMONIE)<', page)
    # The buttons read French but send the stored (English) label.
    assert 'value="PNEUMONIA" id="confirm-pneumonia">PNEUMONIE</button>' in page
    assert "Probability of pneumonia" not in page and "Operating threshold" not in page
    history = client.get("/history").text
    assert "1 cas." in history and "Exporter en CSV" in history and "Aucun cas" not in history
    assert (
        "Recherche impossible : date_from"
        in client.get("/history?date_from=2026-02-02&date_to=2026-02-01").text
    )


def test_a_refusal_is_explained_in_portuguese(client: FlaskClient, colour_photo: bytes) -> None:
    switch(client, "pt", "/")
    location = post_file(client, "/assess", colour_photo, filename="photo.jpg").headers["Location"]
    page = client.get(location).text
    assert "NÃO AVALIÁVEL" in page and "Isto é uma imagem a cores, não uma radiografia." in page
    assert "Detalhes para o técnico:" in page and "This is a colour picture" not in page
    case_id = int(location.rsplit("/", 1)[1])
    refused = client.post(f"/cases/{case_id}/diagnosis", data={"diagnosis": "PNEUMONIA", "confirmed": "yes"})
    assert refused.status_code == 409
    assert "Esta imagem não pôde ser analisada" in refused.text


def bad_upload(upload_id: str) -> BadUpload:
    return next(bad for bad in CATALOGUE if bad.id == upload_id)


@pytest.mark.parametrize(
    ("code", "upload_id", "said"),
    [
        ("fr", "text-file", "Ce fichier n'est pas une image de radiographie."),
        ("fr", "truncated-jpeg", "Le fichier est endommagé ou incomplet."),
        ("fr", "compressed-dicom", "La borne ne peut pas ouvrir ce type de fichier DICOM."),
        ("pt", "text-file", "Este ficheiro não é uma imagem de radiografia."),
        ("pt", "truncated-dicom", "O ficheiro está danificado ou incompleto."),
        ("pt", "compressed-dicom", "O quiosque não consegue abrir este tipo de ficheiro DICOM."),
    ],
)
def test_a_refused_file_is_explained_in_the_pages_language(
    client: FlaskClient, code: str, upload_id: str, said: str
) -> None:
    """The nurse reads the core's plain words translated; the technician's detail stays English."""
    bad = bad_upload(upload_id)
    switch(client, code, "/")
    response = client.post("/assess", data=bad.body, content_type=bad.content_type)
    page = html.unescape(response.text)
    assert response.status_code == bad.status and f'<html lang="{code}">' in page
    english = formats.plain_words(bad.code)
    assert said in page and entries(catalog(code))[english].string in page and english not in page
    technician = str(entries(catalog(code))["Details for the technician: %(detail)s"].string)
    assert technician.replace("%(detail)s", "") in page and bad.detail and bad.detail in page


def test_a_refused_files_api_answer_stays_english_whatever_the_switch_says(client: FlaskClient) -> None:
    bad = bad_upload("compressed-dicom")
    switch(client, "fr", "/")
    response = client.post("/api/v1/predict", data=bad.body, content_type=bad.content_type)
    error = response.get_json()["error"]
    assert error["code"] == bad.code and error["message"] == formats.plain_words(bad.code)
    assert bad.detail and error["detail"].startswith(bad.detail)


def test_the_audit_log_reads_in_french_and_every_action_has_words(
    admin_client: FlaskClient, client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    location = post_file(client, "/assess", small_xray).headers["Location"]
    client.get(location)
    client.get(f"{location}/report")
    client.get("/history/export.csv")
    switch(admin_client, "fr", "/audit")
    page = admin_client.get("/audit").text
    assert "Journal d'audit" in page and "<th>Qui</th>" in page
    assert "connexion" in page and "radio analysée" in page and "résultat consulté" in page
    assert {row["action"] for row in audit_rows(data_dir)} <= set(i18n.ACTION_TEXT)
