"""Server-rendered pages: Arabic right-to-left by default, English with ?lang=en; no JavaScript needed."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

from portal import models, store
from portal.catalog import CATEGORIES, CHANNELS, LIFE_EVENTS

MAX_FORM_BYTES = 8192
PAGE_SIZE = 20

LABELS: dict[str, tuple[str, str]] = {
    "title": ("Government services portal", "بوابة الخدمات الحكومية"),
    "home": ("Services", "الخدمات"), "directory": ("Government bodies", "الجهات الحكومية"),
    "search": ("Search", "بحث"), "search_label": ("Search services", "ابحث عن خدمة"),
    "all": ("All", "الكل"), "body": ("Body", "الجهة"), "category": ("Category", "التصنيف"),
    "channel": ("Channel", "قناة التقديم"), "results": ("results", "نتيجة"), "none": ("No services found.",
                                                                                   "لا توجد خدمات مطابقة."),
    "prev": ("Previous", "السابق"), "next": ("Next", "التالي"), "page": ("Page", "الصفحة"),
    "services_count": ("published services", "خدمة منشورة"), "agencies": ("Agencies", "الهيئات التابعة"),
    "description": ("Description", "الوصف"), "authority": ("Competent authority", "الجهة المختصة"),
    "requirements": ("Required documents", "الوثائق المطلوبة"), "issuer": ("Issued by", "تصدر عن"),
    "applicant": ("the applicant", "مقدم الطلب"), "original": ("original", "أصل"), "copy": ("copy", "صورة"),
    "fees": ("Fees", "الرسوم"), "free": ("Free of charge", "مجانية"), "syp": ("SYP", "ل.س"),
    "legal_basis": ("Legal basis", "السند القانوني"), "payment": ("Payment", "طرق الدفع"),
    "processing_time": ("Processing time", "مدة الإنجاز"), "channels": ("Channels", "قنوات التقديم"),
    "steps": ("Steps", "الخطوات"), "contact": ("Contact", "التواصل"), "legal": ("Legal resources", "المراجع القانونية"),
    "life_events": ("Life events", "مناسبات الحياة"),
    "useful_q": ("Was this information useful?", "هل كانت هذه المعلومات مفيدة؟"), "yes": ("Yes", "نعم"),
    "no": ("No", "لا"), "comment": ("Comment (optional)", "تعليق (اختياري)"),
    "wrong_q": ("Report wrong information", "الإبلاغ عن معلومات خاطئة"), "field": ("Which part?", "أي جزء؟"),
    "what_wrong": ("What is wrong?", "ما الخطأ؟"), "send": ("Send", "إرسال"),
    "thanks": ("Thank you, your feedback was received.", "شكراً لك، تم استلام ملاحظتك."),
    "honeypot": ("Leave this field empty", "اترك هذا الحقل فارغاً"),
    "moderation": ("Feedback moderation", "مراجعة الملاحظات"), "statistics": ("Statistics", "الإحصاءات"),
    "status": ("Status", "الحالة"), "service": ("Service", "الخدمة"), "kind": ("Kind", "النوع"),
    "text": ("Text", "النص"), "action": ("Action", "الإجراء"), "note": ("Note", "ملاحظة"),
    "published": ("Published", "منشورة"), "total": ("Total", "الإجمالي"), "feedback": ("Feedback", "الملاحظات"),
    "reports": ("Reports", "البلاغات"), "score": ("Correctness score", "مؤشر الصحة"),
    "error": ("Error", "خطأ"), "skip": ("Skip to content", "انتقل إلى المحتوى"),
    "hours": ("hours", "ساعة"), "days": ("days", "يوم"), "online": ("Online", "إلكترونياً"),
    "office": ("Service centre", "مركز خدمة"), "phone": ("Telephone", "هاتفياً"),
    "cash": ("Cash at the centre", "نقداً في المركز"), "bank": ("Bank transfer", "تحويل مصرفي"),
    "epayment": ("Electronic payment", "دفع إلكتروني"), "ministry": ("Ministry", "وزارة"),
    "agency": ("Agency", "هيئة"), "authority_type": ("Authority", "سلطة"),
    "accepted": ("Accepted", "مقبولة"), "rejected": ("Rejected", "مرفوضة"), "resolved": ("Resolved", "تمت المعالجة"),
    "new": ("New", "جديدة"), "useful": ("Useful?", "مفيدة؟"),
    "wrong_information": ("Wrong information", "معلومات خاطئة"),
}
FIELD_LABELS: dict[str, tuple[str, str]] = {
    "name": ("Name", "الاسم"), "description": ("Description", "الوصف"),
    "competent_authority": ("Competent authority", "الجهة المختصة"),
    "requirements": ("Required documents", "الوثائق المطلوبة"), "fees": ("Fees", "الرسوم"),
    "processing_time": ("Processing time", "مدة الإنجاز"), "channels": ("Channels", "قنوات التقديم"),
    "steps": ("Steps", "الخطوات"), "contact": ("Contact", "التواصل"),
    "legal_resources": ("Legal resources", "المراجع القانونية"), "other": ("Other", "أخرى"),
}

env = Environment(loader=PackageLoader("portal", "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)


def _lang(request: Request) -> str:
    return "en" if request.query_params.get("lang") == "en" else "ar"


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    lang = _lang(request)
    i = 0 if lang == "en" else 1

    def t(key: str) -> str:
        return LABELS[key][i]

    def pick(row: dict[str, Any], stem: str) -> str:
        return str(row.get(f"{stem}_{lang}") or row.get(f"{stem}_en") or "")

    def link(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        if lang == "en":
            query["lang"] = "en"
        return path + ("?" + urlencode(query) if query else "")

    def switch() -> str:
        query = {k: v for k, v in request.query_params.items() if k != "lang"}
        if lang == "ar":
            query["lang"] = "en"
        return request.url.path + ("?" + urlencode(query) if query else "")

    def duration(iso: str) -> str:
        if iso.startswith("PT"):
            return f"{iso[2:-1]} {t('hours')}"
        return f"{iso[1:-1]} {t('days')}"

    html = env.get_template(template).render(
        lang=lang, dir="ltr" if lang == "en" else "rtl", t=t, pick=pick, link=link, switch=switch(),
        duration=duration, categories={k: v[i] for k, v in CATEGORIES.items()},
        life_events={k: v[i] for k, v in LIFE_EVENTS.items()}, fields={k: v[i] for k, v in FIELD_LABELS.items()},
        channels=CHANNELS, **ctx)
    return HTMLResponse(html, status_code=status_code)


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(415, "expected an HTML form (application/x-www-form-urlencoded)")
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise HTTPException(413, f"form larger than {MAX_FORM_BYTES} bytes")
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _same_origin(request: Request) -> None:
    """Admin forms authenticate with HTTP Basic, which browsers replay: refuse cross-site posts."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, "cross-site form submission refused")


def mount(app: FastAPI) -> None:
    from portal.app import cached_bodies, index_of, is_admin, pool_of, require_admin

    @app.get("/static/portal.css", include_in_schema=False)
    async def css() -> Response:
        return Response(STYLE, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request, q: str = "", body: str = "", category: str = "", channel: str = "",
                   page: int = 1) -> HTMLResponse:
        page = min(max(page, 1), 500)
        q = q[:200]
        filters = store.Filters(q=q, body=body or None, category=category or None,
                                channel=channel if channel in CHANNELS else None)
        result = await store.search(pool_of(request), filters, PAGE_SIZE, (page - 1) * PAGE_SIZE, index_of(request))
        bodies = await cached_bodies(request)
        return render(request, "home.html", q=q, body=body, category=category, channel=channel, page=page,
                      pages=max(1, math.ceil(result["total"] / PAGE_SIZE)), result=result, bodies=bodies,
                      body_names={b["id"]: b for b in bodies})

    @app.get("/bodies", response_class=HTMLResponse, include_in_schema=False)
    async def directory(request: Request) -> HTMLResponse:
        bodies = await cached_bodies(request)
        return render(request, "bodies.html", bodies=bodies)

    @app.get("/bodies/{body_id}", response_class=HTMLResponse, include_in_schema=False)
    async def body_page(request: Request, body_id: str, page: int = 1) -> HTMLResponse:
        try:
            found = await store.body(pool_of(request), body_id)
        except store.NotFound as exc:
            return render(request, "error.html", 404, message=str(exc))
        page = min(max(page, 1), 500)
        result = await store.search(pool_of(request), store.Filters(body=body_id), PAGE_SIZE, (page - 1) * PAGE_SIZE,
                                    index_of(request))
        bodies = await cached_bodies(request)
        return render(request, "body.html", body=found, result=result, page=page,
                      pages=max(1, math.ceil(result["total"] / PAGE_SIZE)), body_names={b["id"]: b for b in bodies})

    async def service_view(request: Request, service_id: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        try:
            s = await store.service(pool_of(request), service_id, ["published"])
        except store.NotFound as exc:
            return render(request, "error.html", 404, message=str(exc))
        bodies = {b["id"]: b for b in await cached_bodies(request)}
        return render(request, "service.html", status_code, s=s, body_names=bodies,
                      sent=request.query_params.get("sent") == "1", **ctx)

    @app.get("/services/{service_id}", response_class=HTMLResponse, include_in_schema=False)
    async def service_page(request: Request, service_id: str) -> HTMLResponse:
        return await service_view(request, service_id)

    @app.post("/services/{service_id}/feedback", include_in_schema=False)
    async def feedback_form(request: Request, service_id: str) -> Response:
        form = await _form(request)
        data: dict[str, Any] = {"kind": form.get("kind", ""), "text": form.get("text", ""),
                                "website": form.get("website", "")}
        if data["kind"] == "useful":
            data["useful"] = {"yes": True, "no": False}.get(form.get("useful", ""))
        else:
            data["field"] = form.get("field") or None
        try:
            item = models.FeedbackIn.model_validate(data)
        except ValidationError as exc:
            message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            return await service_view(request, service_id, 422, error=message)
        try:
            await app.state.submit_feedback(request, service_id, item)
        except HTTPException as exc:
            if exc.status_code == 404:
                return render(request, "error.html", 404, message=str(exc.detail))
            return await service_view(request, service_id, exc.status_code, error=str(exc.detail))
        lang = "&lang=en" if _lang(request) == "en" else ""
        return RedirectResponse(f"/services/{service_id}?sent=1{lang}#feedback", status_code=303)

    @app.get("/admin/feedback", response_class=HTMLResponse, include_in_schema=False)
    async def admin_feedback(request: Request, status: str = "new", page: int = 1) -> HTMLResponse:
        require_admin(request)
        status_filter = status if status in models.TRANSITIONS or status == "new" else None
        page = min(max(page, 1), 500)
        result = await store.list_feedback(pool_of(request), status_filter, None, 50, (page - 1) * 50)
        nexts = {s: sorted(t for t, froms in models.TRANSITIONS.items() if s in froms)
                 for s in ("new", "accepted", "rejected", "resolved")}
        return render(request, "admin_feedback.html", result=result, status=status_filter or "", nexts=nexts,
                      page=page, pages=max(1, math.ceil(result["total"] / 50)))

    @app.post("/admin/feedback/{feedback_id}", include_in_schema=False)
    async def admin_moderate(request: Request, feedback_id: int) -> Response:
        require_admin(request)
        _same_origin(request)
        form = await _form(request)
        target = form.get("status", "")
        if target not in models.TRANSITIONS:
            return render(request, "error.html", 422, message=f"unknown status {target!r}")
        try:
            await store.moderate(pool_of(request), feedback_id, target, form.get("note", "")[:1000])
        except store.NotFound as exc:
            return render(request, "error.html", 404, message=str(exc))
        except store.Conflict as exc:
            return render(request, "error.html", 409, message=str(exc))
        lang = "&lang=en" if _lang(request) == "en" else ""
        return RedirectResponse(f"/admin/feedback?status={form.get('back', 'new')}{lang}", status_code=303)

    @app.get("/admin/statistics", response_class=HTMLResponse, include_in_schema=False)
    async def admin_statistics(request: Request) -> HTMLResponse:
        require_admin(request)
        return render(request, "admin_stats.html", rows=await store.statistics(pool_of(request)),
                      admin=is_admin(request))


STYLE = """
body{font-family:system-ui,"Noto Naskh Arabic","Segoe UI",Tahoma,sans-serif;margin:0;color:#1b1b1b;line-height:1.5}
header,main,footer{max-width:60rem;margin:auto;padding:0 1rem}
header{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;border-bottom:3px solid #005a3c}
header nav a{margin-inline-end:1rem}
a{color:#00553a}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #f0b400}
.skip{position:absolute;inset-inline-start:-999px}.skip:focus{inset-inline-start:1rem}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem;text-align:start}
.hit{border-bottom:1px solid #ddd;padding:.5rem 0}.meta{color:#555;font-size:.9rem}
.error{background:#fde8e8;border:1px solid #b00;padding:.5rem}
.ok{background:#e6f4ea;border:1px solid #060;padding:.5rem}
form.search{display:flex;gap:.5rem;flex-wrap:wrap;margin:1rem 0}.hp{display:none}
fieldset{margin:1rem 0}label{display:block;margin:.3rem 0}
"""
