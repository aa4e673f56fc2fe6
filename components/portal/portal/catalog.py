"""A deterministic generator of the programme's service catalog: 4,246 services from 26 bodies, 2,894 published.

The same seed always yields the same catalog (``catalog_digest``), so the first ``up`` of every stack seeds
identical data. Names, documents, fees and times follow each body's domain.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from govcloud_common.bodies import Body

TOTAL_SERVICES = 4246
PUBLISHED_SERVICES = 2894
SEED = 20260412
GENERATOR_VERSION = "1"
STATUSES = ("draft", "published", "withdrawn")
CHANNELS = ("online", "office", "phone")
PAYMENT_CHANNELS = ("cash", "bank", "epayment")

# thematic areas (CPSV-AP thematicArea) and life events (cv:LifeEvent), bilingual
CATEGORIES: dict[str, tuple[str, str]] = {
    "civil-status": ("Civil status and identity", "الأحوال المدنية والهوية"),
    "travel": ("Travel and residence", "السفر والإقامة"),
    "business": ("Business and trade", "الأعمال والتجارة"),
    "tax": ("Taxes and fees", "الضرائب والرسوم"),
    "justice": ("Justice and legal affairs", "العدل والشؤون القانونية"),
    "health": ("Health", "الصحة"),
    "education": ("Education", "التعليم"),
    "industry": ("Industry and crafts", "الصناعة والحرف"),
    "agriculture": ("Agriculture and livestock", "الزراعة والثروة الحيوانية"),
    "utilities": ("Water, electricity and energy", "المياه والكهرباء والطاقة"),
    "transport": ("Transport and vehicles", "النقل والمركبات"),
    "housing": ("Housing and construction", "السكن والبناء"),
    "local": ("Local services and environment", "الخدمات المحلية والبيئة"),
    "employment": ("Employment and social affairs", "العمل والشؤون الاجتماعية"),
    "culture": ("Culture, media and tourism", "الثقافة والإعلام والسياحة"),
    "religion": ("Religious affairs", "الشؤون الدينية"),
    "digital": ("Digital services", "الخدمات الرقمية"),
}
LIFE_EVENTS: dict[str, tuple[str, str]] = {
    "birth": ("Having a baby", "ولادة طفل"),
    "marriage": ("Getting married", "الزواج"),
    "death": ("Death of a relative", "وفاة قريب"),
    "moving": ("Moving home", "تغيير السكن"),
    "studying": ("Studying", "الدراسة"),
    "working": ("Starting a job", "بدء العمل"),
    "business": ("Starting a business", "تأسيس عمل تجاري"),
    "travelling": ("Travelling abroad", "السفر إلى الخارج"),
    "driving": ("Owning a vehicle", "امتلاك مركبة"),
    "building": ("Building a home", "بناء مسكن"),
    "retiring": ("Retiring", "التقاعد"),
}
EVENTS_BY_CATEGORY = {
    "civil-status": ["birth", "marriage", "death"], "travel": ["travelling"], "business": ["business"],
    "tax": ["business", "working"], "justice": ["marriage", "death", "business"], "health": ["birth", "working"],
    "education": ["studying"], "industry": ["business"], "agriculture": ["business"],
    "utilities": ["moving", "building"], "transport": ["driving"], "housing": ["building", "moving"],
    "local": ["moving", "business"], "employment": ["working", "retiring"], "culture": ["business"],
    "religion": ["marriage", "death"], "digital": ["business", "working"],
}


@dataclass(frozen=True)
class Domain:
    category: str
    fee_scale: int  # typical fee in SYP of an "issue" service
    weight: float  # share of the catalog
    objects: tuple[tuple[str, str], ...]  # (english, arabic)


DOMAINS: dict[str, Domain] = {
    "moct": Domain("digital", 15000, 0.8, (
        ("landline subscription", "اشتراك هاتف ثابت"), ("internet service provider licence", "ترخيص مزود خدمة إنترنت"),
        ("postal box subscription", "اشتراك صندوق بريد"), ("domain name", "اسم نطاق"),
        ("telecom equipment type approval", "موافقة نوع لتجهيزات الاتصالات"),
        ("radio frequency licence", "ترخيص ترددات راديوية"))),
    "moi": Domain("travel", 50000, 1.6, (
        ("passport", "جواز سفر"), ("driving licence", "رخصة قيادة"), ("travel permit", "إذن سفر"),
        ("foreigner residence permit", "إقامة أجنبي"), ("firearm possession licence", "ترخيص حيازة سلاح"),
        ("traffic violations statement", "بيان مخالفات مرورية"),
        ("vehicle ownership certificate", "شهادة ملكية مركبة"))),
    "mof": Domain("tax", 20000, 1.0, (
        ("customs declaration", "بيان جمركي"), ("financial clearance certificate", "براءة ذمة مالية"),
        ("state property lease", "إيجار أملاك الدولة"), ("pension file", "ملف معاش تقاعدي"),
        ("public tender registration", "تسجيل في المناقصات العامة"), ("treasury payment order", "أمر صرف من الخزينة"))),
    "moj": Domain("justice", 10000, 1.3, (
        ("non-conviction record", "سجل عدلي لا حكم عليه"), ("power of attorney", "وكالة عامة"),
        ("court judgment copy", "صورة حكم قضائي"), ("notarial authentication", "تصديق لدى الكاتب بالعدل"),
        ("marriage contract", "عقد زواج"), ("inheritance limitation deed", "حصر إرث"),
        ("civil lawsuit", "دعوى مدنية"))),
    "moh": Domain("health", 25000, 1.2, (
        ("health certificate", "شهادة صحية"), ("pharmacy licence", "ترخيص صيدلية"),
        ("medical practice licence", "ترخيص مزاولة مهنة طبية"), ("medicine registration", "تسجيل دواء"),
        ("private clinic licence", "ترخيص عيادة خاصة"), ("vaccination card", "بطاقة لقاح"),
        ("medical committee report", "تقرير لجنة طبية"))),
    "moe": Domain("education", 5000, 1.1, (
        ("school certificate", "شهادة مدرسية"), ("secondary certificate equivalence", "معادلة الشهادة الثانوية"),
        ("private school licence", "ترخيص مدرسة خاصة"), ("student transfer", "نقل طالب"),
        ("examination result", "نتيجة امتحان"), ("teacher appointment", "تعيين مدرس"))),
    "mohe": Domain("education", 10000, 1.0, (
        ("university degree", "شهادة جامعية"), ("degree equivalence", "معادلة شهادة جامعية"),
        ("academic transcript", "كشف علامات جامعي"), ("scholarship", "منحة دراسية"),
        ("university admission", "قبول جامعي"), ("graduation document", "وثيقة تخرج"))),
    "moet": Domain("business", 75000, 1.3, (
        ("import licence", "إجازة استيراد"), ("certificate of origin", "شهادة منشأ"), ("trademark", "علامة تجارية"),
        ("commercial register", "سجل تجاري"), ("limited liability company", "شركة محدودة المسؤولية"),
        ("commercial agency", "وكالة تجارية"))),
    "mointr": Domain("business", 20000, 0.9, (
        ("shop pricing certificate", "شهادة تسعير"), ("bakery licence", "ترخيص مخبز"),
        ("consumer complaint", "شكوى مستهلك"), ("fuel station allocation", "مخصصات محطة وقود"),
        ("scale calibration certificate", "شهادة معايرة موازين"), ("wholesale trader card", "بطاقة تاجر جملة"))),
    "moind": Domain("industry", 100000, 0.9, (
        ("industrial licence", "ترخيص صناعي"), ("industrial register", "سجل صناعي"),
        ("product quality certificate", "شهادة جودة منتج"), ("craft licence", "ترخيص حرفي"),
        ("industrial city plot", "مقسم في مدينة صناعية"), ("production line expansion", "توسيع خط إنتاج"))),
    "moag": Domain("agriculture", 15000, 1.0, (
        ("agricultural holding card", "بطاقة حيازة زراعية"), ("livestock health certificate", "شهادة صحية للمواشي"),
        ("seed import permit", "إذن استيراد بذار"), ("agricultural land lease", "إيجار أرض زراعية"),
        ("pesticide registration", "تسجيل مبيد زراعي"), ("poultry farm licence", "ترخيص مدجنة"))),
    "mowr": Domain("utilities", 20000, 0.7, (
        ("well drilling licence", "ترخيص حفر بئر"), ("water abstraction permit", "إذن استجرار مياه"),
        ("drinking water subscription", "اشتراك مياه الشرب"), ("sewage connection", "وصلة صرف صحي"),
        ("irrigation water quota", "حصة مياه ري"))),
    "moel": Domain("utilities", 30000, 0.8, (
        ("electricity subscription", "اشتراك كهرباء"), ("electricity meter", "عداد كهرباء"),
        ("solar power system permit", "ترخيص منظومة طاقة شمسية"),
        ("three-phase connection", "ربط كهربائي ثلاثي الطور"), ("electricity bill", "فاتورة كهرباء"))),
    "mooil": Domain("utilities", 40000, 0.7, (
        ("heating fuel allocation", "مخصصات مازوت التدفئة"), ("gas cylinder card", "بطاقة أسطوانة غاز"),
        ("fuel station licence", "ترخيص محطة وقود"), ("quarry licence", "ترخيص مقلع"),
        ("mineral exploration permit", "إذن تنقيب عن المعادن"))),
    "motr": Domain("transport", 35000, 1.1, (
        ("vehicle technical inspection", "فحص فني للمركبة"), ("public transport line licence", "ترخيص خط نقل عام"),
        ("marine navigation licence", "رخصة ملاحة بحرية"), ("aircraft registration", "تسجيل طائرة"),
        ("freight transport licence", "ترخيص نقل بضائع"), ("seafarer book", "دفتر بحار"))),
    "mopw": Domain("housing", 60000, 1.0, (
        ("building permit", "رخصة بناء"), ("housing subscription", "اكتتاب على مسكن"),
        ("contractor classification", "تصنيف متعهد"), ("engineering office licence", "ترخيص مكتب هندسي"),
        ("property valuation", "تخمين عقاري"), ("occupancy certificate", "شهادة إشغال"))),
    "mola": Domain("local", 10000, 1.3, (
        ("residence certificate", "شهادة سكن"), ("shop licence", "رخصة محل تجاري"),
        ("environmental approval", "موافقة بيئية"), ("kiosk permit", "ترخيص كشك"),
        ("property registry extract", "بيان قيد عقاري"), ("waste collection service", "خدمة جمع النفايات"))),
    "mosal": Domain("employment", 10000, 1.1, (
        ("work permit for non-Syrians", "إجازة عمل لغير السوريين"), ("association registration", "شهر جمعية"),
        ("disability card", "بطاقة إعاقة"), ("social assistance", "معونة اجتماعية"),
        ("employment contract registration", "تسجيل عقد عمل"),
        ("social insurance registration", "تسجيل في التأمينات الاجتماعية"))),
    "motour": Domain("culture", 50000, 0.7, (
        ("hotel classification", "تصنيف فندق"), ("tourist guide licence", "ترخيص دليل سياحي"),
        ("travel agency licence", "ترخيص مكتب سياحة وسفر"), ("tourist restaurant licence", "ترخيص مطعم سياحي"),
        ("tourism investment project", "مشروع استثمار سياحي"))),
    "mocult": Domain("culture", 5000, 0.6, (
        ("book publication approval", "موافقة نشر كتاب"), ("archaeological site visit permit", "إذن زيارة موقع أثري"),
        ("cultural centre membership", "عضوية مركز ثقافي"), ("national library card", "بطاقة المكتبة الوطنية"),
        ("cultural event permit", "ترخيص نشاط ثقافي"))),
    "moinf": Domain("culture", 25000, 0.6, (
        ("periodical publication licence", "ترخيص مطبوعة دورية"), ("journalist accreditation", "اعتماد صحفي"),
        ("media production company licence", "ترخيص شركة إنتاج إعلامي"), ("filming permit", "إذن تصوير"),
        ("outdoor advertising licence", "ترخيص إعلان طرقي"))),
    "moaw": Domain("religion", 5000, 0.6, (
        ("hajj registration", "تسجيل حج"), ("waqf property lease", "إيجار عقار وقفي"),
        ("mosque construction permit", "ترخيص بناء مسجد"), ("religious institute licence", "ترخيص معهد شرعي"),
        ("preaching licence", "إجازة خطابة"))),
    "mofa": Domain("travel", 30000, 1.0, (
        ("document legalisation", "تصديق وثيقة"), ("consular registration", "تسجيل قنصلي"),
        ("entry visa", "تأشيرة دخول"), ("foreign document authentication", "تصديق وثائق أجنبية"),
        ("consular power of attorney", "وكالة قنصلية"))),
    "cra": Domain("civil-status", 2500, 1.9, (
        ("birth certificate", "شهادة ولادة"), ("family civil status extract", "إخراج قيد عائلي"),
        ("individual civil status extract", "إخراج قيد فردي"), ("national identity card", "بطاقة شخصية"),
        ("marriage registration", "تسجيل واقعة زواج"), ("death registration", "تسجيل واقعة وفاة"),
        ("family booklet", "دفتر عائلة"))),
    "tax": Domain("tax", 15000, 1.2, (
        ("income tax return", "بيان ضريبة الدخل"), ("real estate tax", "ضريبة عقارية"),
        ("tax clearance", "براءة ذمة ضريبية"), ("vehicle fee", "رسم مركبة"), ("stamp duty", "رسم طابع"),
        ("tax identification number", "رقم ضريبي"))),
    "nans": Domain("digital", 20000, 0.5, (
        ("e-government account", "حساب حكومة إلكترونية"), ("website hosting", "استضافة موقع إلكتروني"),
        ("digital certificate", "شهادة رقمية"), ("data centre colocation", "استضافة تجهيزات في مركز البيانات"),
        ("government e-mail account", "بريد إلكتروني حكومي"))),
}


@dataclass(frozen=True)
class Action:
    key: str
    en: str  # "{}" is the object
    ar: str
    fee_factor: float
    days: tuple[int, ...]  # candidate processing times; 0 = a few hours
    channels: tuple[str, ...]


ACTIONS = (
    Action("issue", "Issue of {}", "إصدار {}", 1.0, (3, 5, 7, 10, 15), ("office", "online")),
    Action("renew", "Renewal of {}", "تجديد {}", 0.8, (2, 3, 5, 7), ("online", "office")),
    Action("replace", "Replacement of a lost {}", "بدل ضائع عن {}", 1.5, (5, 7, 10, 14), ("office",)),
    Action("amend", "Amendment of {}", "تعديل بيانات {}", 0.5, (3, 5, 7, 10), ("office", "online")),
    Action("cancel", "Cancellation of {}", "إلغاء {}", 0.2, (1, 2, 3, 5), ("office",)),
    Action("copy", "Certified copy of {}", "صورة مصدقة عن {}", 0.1, (0, 1, 2), ("online", "office")),
    Action("transfer", "Transfer of {}", "نقل {}", 0.7, (5, 7, 10, 15, 30), ("office",)),
    Action("inquiry", "Status inquiry on {}", "الاستعلام عن {}", 0.0, (0,), ("online", "phone", "office")),
    Action("objection", "Objection concerning {}", "اعتراض بخصوص {}", 0.05, (15, 30, 45), ("office", "online")),
    Action("extend", "Extension of {}", "تمديد {}", 0.6, (3, 5, 7), ("online", "office")),
    Action("suspend", "Temporary suspension of {}", "إيقاف مؤقت لـ{}", 0.1, (1, 3, 5), ("office", "phone")),
    Action("verify", "Verification of {}", "التحقق من صحة {}", 0.05, (0, 1, 2), ("online", "phone")),
)
AUDIENCES = (
    ("", "", 1.0), (" for individuals", " للأفراد", 1.0), (" for companies", " للشركات", 3.0),
    (" for expatriates", " للمغتربين", 2.0), (" (urgent)", " (مستعجل)", 2.0),
)

# required documents: (key, english, arabic, issuing body or None)
DOCUMENTS = (
    ("national-id", "National identity card", "البطاقة الشخصية", "cra"),
    ("family-extract", "Family civil status extract", "إخراج قيد عائلي", "cra"),
    ("individual-extract", "Individual civil status extract", "إخراج قيد فردي", "cra"),
    ("photos", "Two recent personal photographs", "صورتان شخصيتان حديثتان", None),
    ("residence", "Residence certificate", "شهادة سكن", "mola"),
    ("criminal-record", "Non-conviction record", "سجل عدلي لا حكم عليه", "moj"),
    ("tax-clearance", "Tax clearance", "براءة ذمة ضريبية", "tax"),
    ("commercial-register", "Commercial register extract", "مصدقة سجل تجاري", "moet"),
    ("health-certificate", "Health certificate", "شهادة صحية", "moh"),
    ("school-certificate", "Educational certificate", "الشهادة التعليمية", "moe"),
    ("degree", "University degree", "الشهادة الجامعية", "mohe"),
    ("power-of-attorney", "Power of attorney (when applying for another person)",
     "وكالة قانونية (عند التقديم عن الغير)", "moj"),
    ("passport", "Passport", "جواز السفر", "moi"),
    ("property-extract", "Property registry extract", "بيان قيد عقاري", "mola"),
    ("lease", "Registered lease contract", "عقد إيجار مسجل", "mola"),
    ("plans", "Engineering plans certified by the Engineers Syndicate", "مخططات هندسية مصدقة من نقابة المهندسين",
     None),
    ("insurance", "Social insurance statement", "بيان التأمينات الاجتماعية", "mosal"),
    ("industrial-register", "Industrial register extract", "مصدقة سجل صناعي", "moind"),
    ("application", "Application form signed by the applicant", "طلب خطي موقع من مقدم الطلب", None),
)
STEPS = {
    "online": [("Create or sign in to your e-government account", "أنشئ حسابك في الحكومة الإلكترونية أو سجّل الدخول"),
               ("Fill in the application online and upload the documents", "املأ الطلب إلكترونياً وارفع الوثائق")],
    "office": [("Go to the service centre with the original documents", "راجع مركز الخدمة مع الوثائق الأصلية"),
               ("Submit the application at the counter", "قدّم الطلب لدى النافذة")],
    "phone": [("Call the service line and give your application number", "اتصل بخط الخدمة وأعطِ رقم طلبك")],
}
PAY_STEP = ("Pay the fee", "ادفع الرسم")
RECEIVE_STEP = ("Receive the result or collect the document", "استلم النتيجة أو الوثيقة")


@dataclass
class Service:
    id: str
    body_id: str
    status: str
    name_en: str
    name_ar: str
    description_en: str
    description_ar: str
    category: str
    life_events: list[str]
    channels: list[str]
    fee_syp: int
    fee_legal_basis_en: str
    fee_legal_basis_ar: str
    payment_channels: list[str]
    processing_time: str  # ISO 8601 duration
    processing_hours: int
    requirements: list[dict[str, object]] = field(default_factory=list)
    steps: list[dict[str, str]] = field(default_factory=list)
    contact: dict[str, str] = field(default_factory=dict)
    legal_resources: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _allocate(bodies: Sequence[Body], total: int) -> dict[str, int]:
    """Split ``total`` over the bodies by their domain weight (largest remainder, ties by file order)."""
    weights = {b.id: DOMAINS[b.id].weight if b.id in DOMAINS else 1.0 for b in bodies}
    scale = total / sum(weights.values())
    exact = {k: w * scale for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    rest = total - sum(counts.values())
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[:rest]:
        counts[k] += 1
    return counts


def _round_fee(value: float) -> int:
    if value <= 0:
        return 0
    step = 500 if value < 10000 else 1000 if value < 100000 else 5000
    return max(step, round(value / step) * step)


def _duration(days: int, hours: int) -> tuple[str, int]:
    return (f"P{days}D", days * 24) if days else (f"PT{hours}H", hours)


def _laws(rng: random.Random, body: Body) -> list[dict[str, str]]:
    laws = []
    for kind_en, kind_ar in rng.sample([("Law", "القانون"), ("Legislative Decree", "المرسوم التشريعي"),
                                        ("Decree", "المرسوم"), ("Ministerial Decision", "القرار الوزاري")], 2):
        number, year = rng.randint(1, 120), rng.randint(1990, 2025)
        laws.append({"id": f"{body.id}-{kind_en.lower().replace(' ', '-')}-{number}-{year}",
                     "en": f"{kind_en} No. {number} of {year}", "ar": f"{kind_ar} رقم {number} لعام {year}"})
    return laws


def _domain(body: Body) -> Domain:
    try:
        return DOMAINS[body.id]
    except KeyError:  # a body added to bodies.yaml after this generator: a generic domain
        return Domain("local", 10000, 1.0, (("certificate", "شهادة"), ("licence", "ترخيص"), ("registration", "تسجيل"),
                                            ("permit", "إذن"), ("statement", "بيان"), ("approval", "موافقة")))


def generate(bodies: Sequence[Body], seed: int = SEED, total: int = TOTAL_SERVICES,
             published: int = PUBLISHED_SERVICES) -> list[Service]:
    """The catalog: exactly ``total`` services, ``published`` of them published, the same for the same inputs."""
    rng = random.Random(seed)
    counts = _allocate(bodies, total)
    names = {b.id: b for b in bodies}
    services: list[Service] = []
    for body in bodies:
        domain = _domain(body)
        combos = [(a, o, au) for o in domain.objects for a in ACTIONS for au in AUDIENCES]
        if counts[body.id] > len(combos):
            raise ValueError(f"{body.id}: {counts[body.id]} services wanted, only {len(combos)} distinct names")
        rng.shuffle(combos)
        laws = _laws(rng, body)
        contact = {"phone": f"+963 11 {rng.randint(200, 699)} {rng.randint(1000, 9999)}",
                   "email": f"services@{body.id}.gov.sy", "hours_en": "Sunday to Thursday, 08:00-14:00",
                   "hours_ar": "من الأحد إلى الخميس، 08:00-14:00"}
        for n, (action, (obj_en, obj_ar), (aud_en, aud_ar, aud_factor)) in enumerate(combos[: counts[body.id]], 1):
            name_en = (action.en.format(obj_en) + aud_en)
            name_en = name_en[0].upper() + name_en[1:]
            name_ar = action.ar.format(obj_ar) + aud_ar
            channels = sorted(set(action.channels[: rng.randint(1, len(action.channels))]) | {"office"}
                              if action.key != "inquiry" else set(action.channels), key=CHANNELS.index)
            fee = _round_fee(domain.fee_scale * action.fee_factor * aud_factor * rng.choice((0.5, 1, 1, 1.5, 2)))
            days = rng.choice(action.days)
            if aud_en == " (urgent)":
                days = max(0, days // 3)
            processing_time, hours = _duration(days, rng.choice((1, 2, 4)))
            docs = [d for d in DOCUMENTS if d[0] in ("national-id", "application")]
            docs += rng.sample([d for d in DOCUMENTS if d not in docs], rng.randint(0, 4))
            requirements = [
                {"id": f"{body.id}-{n:04d}-r{i}", "key": key, "en": en, "ar": ar,
                 "issuer": issuer, "form": "original" if rng.random() < 0.55 else "copy"}
                for i, (key, en, ar, issuer) in enumerate(docs, 1)
            ]
            steps = list(STEPS[channels[0]])
            if fee:
                steps.append(PAY_STEP)
            steps.append(RECEIVE_STEP)
            pay = sorted({"cash"} | set(rng.sample(PAYMENT_CHANNELS[1:], rng.randint(0, 2))),
                         key=PAYMENT_CHANNELS.index) if fee else []
            law = rng.choice(laws)
            how_en = " or ".join({"online": "online", "office": "at a service centre", "phone": "by phone"}[c]
                                 for c in channels)
            how_ar = " أو ".join({"online": "إلكترونياً", "office": "في مراكز الخدمة", "phone": "هاتفياً"}[c]
                                 for c in channels)
            fee_en = f"The fee is {fee:,} SYP." if fee else "The service is free of charge."
            fee_ar = f"الرسم {fee:,} ليرة سورية." if fee else "الخدمة مجانية."
            services.append(Service(
                id=f"{body.id}-{n:04d}", body_id=body.id, status="draft",
                name_en=name_en, name_ar=name_ar,
                description_en=f"{name_en}, provided by the {names[body.id].en}. Apply {how_en}. {fee_en}",
                description_ar=f"{name_ar}، تقدمها {names[body.id].ar}. يقدَّم الطلب {how_ar}. {fee_ar}",
                category=domain.category,
                life_events=sorted(rng.sample(EVENTS_BY_CATEGORY[domain.category],
                                              rng.randint(0, len(EVENTS_BY_CATEGORY[domain.category])))),
                channels=list(channels), fee_syp=fee,
                fee_legal_basis_en=law["en"] if fee else "", fee_legal_basis_ar=law["ar"] if fee else "",
                payment_channels=pay, processing_time=processing_time, processing_hours=hours,
                requirements=requirements, steps=[{"en": en, "ar": ar} for en, ar in steps],
                contact=contact, legal_resources=laws,
            ))
    order = list(range(len(services)))
    rng.shuffle(order)
    for rank, idx in enumerate(order):
        services[idx].status = "published" if rank < published else ("withdrawn" if rank % 4 == 0 else "draft")
    return services


def catalog_digest(services: Sequence[Service]) -> str:
    h = hashlib.sha256()
    for s in services:
        h.update(json.dumps(s.as_dict(), ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()
