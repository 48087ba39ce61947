"""Deterministic synthetic patients for the benchmarks: one FHIR R4 Bundle text each.

About 30 resources per patient: the Patient; MedicationStatements and MedicationRequests
coded with RxNorm ingredients or products, some free-text kratom (a few 7-OH products), some
with a contained or a bundled Medication; SNOMED CT and ICD-10-CM Conditions (depression
F32/F33 for some); Observations (PHQ-9 totals, LOINC 44261-6, for some; vitals and labs the
rules do not read); Encounters, Immunizations and AllergyIntolerances the rules do not read;
sometimes a medication-review Procedure, a Provenance and a CarePlan. Every resource is valid
FHIR R4; the shares are set so that several rules fire for some patients.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TODAY = NOW.date()
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
BOTANICALS = "http://careplan-rules.org/CodeSystem/botanicals"

Resource = dict[str, Any]

# (rxnorm code, display, products: [(rxnorm product code, display)]); products map to the
# ingredient through the pack's product-ingredient table, as real EHR data codes them
DRUGS: dict[str, list[tuple[str, str, list[tuple[str, str]]]]] = {
    "chronic": [
        ("29046", "lisinopril", [("314076", "lisinopril 10 MG Oral Tablet")]),
        ("6809", "metformin", [("861007", "metformin hydrochloride 500 MG Oral Tablet")]),
        ("83367", "atorvastatin", [("617312", "atorvastatin 20 MG Oral Tablet")]),
        ("17767", "amlodipine", [("197361", "amlodipine 5 MG Oral Tablet")]),
        ("10582", "levothyroxine", [("966247", "levothyroxine sodium 0.05 MG Oral Tablet")]),
        ("7646", "omeprazole", [("198053", "omeprazole 20 MG Delayed Release Oral Capsule")]),
        ("1191", "aspirin", [("243670", "aspirin 81 MG Oral Tablet")]),
        ("5224", "heparin", []),
    ],
    "antidepressant": [
        ("36437", "sertraline", [("312940", "sertraline 50 MG Oral Tablet"), ("328670", "Sertraline 100MG")]),
        ("321988", "escitalopram", [("349332", "escitalopram 10 MG Oral Tablet")]),
        ("4493", "fluoxetine", [("310385", "fluoxetine 20 MG Oral Capsule")]),
        ("72625", "duloxetine", [("596926", "duloxetine 30 MG Delayed Release Oral Capsule")]),
        ("39786", "venlafaxine", []),
        ("10737", "trazodone", []),
    ],
    "opioid": [
        ("7804", "oxycodone", [("1049621", "oxycodone hydrochloride 5 MG Oral Tablet")]),
        ("5489", "hydrocodone", [("856999", "acetaminophen 325 MG / hydrocodone bitartrate 5 MG Oral Tablet")]),
        ("10689", "tramadol", [("836466", "tramadol hydrochloride 50 MG Oral Tablet")]),
        ("2670", "codeine", []),
    ],
    "sedative": [
        ("596", "alprazolam", [("308048", "alprazolam 0.5 MG Oral Tablet")]),
        ("6470", "lorazepam", []),
        ("39993", "zolpidem", []),
        ("25480", "gabapentin", [("310431", "gabapentin 100 MG Oral Capsule")]),
    ],
    "nti": [("42316", "tacrolimus", [])],
    "naloxone": [("7242", "naloxone", [])],
}
KRATOM_TEXTS = [
    "Kratom powder 3 g daily",
    "kratom capsules, 2 caps twice a day",
    "Maeng Da kratom tea",
    "ketum leaf tea",
    "Red Bali kratom capsules",
    "OPMS kratom extract shot",
]
SEVEN_OH_TEXTS = ["7-OH tablets 15 mg", "7-hydroxymitragynine gummies"]
CONDITIONS = [  # (system, code, display, share of patients)
    (SNOMED, "38341003", "Hypertensive disorder", 0.35),
    (SNOMED, "44054006", "Diabetes mellitus type 2", 0.2),
    (SNOMED, "195967001", "Asthma", 0.1),
    (SNOMED, "55822004", "Hyperlipidemia", 0.3),
    (SNOMED, "40055000", "Chronic sinusitis", 0.15),
    (ICD10, "M54.50", "Low back pain, unspecified", 0.2),
    (ICD10, "E66.9", "Obesity, unspecified", 0.2),
    (ICD10, "J30.9", "Allergic rhinitis, unspecified", 0.15),
    (ICD10, "F41.1", "Generalized anxiety disorder", 0.1),
    (ICD10, "F10.20", "Alcohol dependence, uncomplicated", 0.03),
    (ICD10, "F11.20", "Opioid dependence, uncomplicated", 0.02),
]
DEPRESSION = [(ICD10, "F32.1", "Major depressive disorder, single episode, moderate"), (SNOMED, "370143000", "MDD")]
VITALS = [  # (loinc, display, unit, low, high)
    ("8867-4", "Heart rate", "/min", 55, 100),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 100, 160),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 60, 100),
    ("29463-7", "Body weight", "kg", 45, 120),
    ("8302-2", "Body height", "cm", 150, 195),
    ("39156-5", "Body mass index", "kg/m2", 18, 40),
    ("9279-1", "Respiratory rate", "/min", 12, 20),
]
LABS = [
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 200),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4, 10),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 120, 280),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 1.6),
]


def day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def moment(days_ago: int, rng: random.Random) -> str:
    return f"{day(days_ago)}T{rng.randint(7, 18):02d}:{rng.choice(['00', '15', '30', '45'])}:00Z"


def uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _cc(system: str, code: str, display: str, text: bool = True) -> Resource:
    cc: Resource = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        cc["text"] = display
    return cc


class PatientBuilder:
    """One synthetic patient's resources (valid FHIR R4), built from a seeded generator."""

    def __init__(self, rng: random.Random, number: int) -> None:
        self.rng = rng
        self.pid = f"pat{number:06d}"
        self.subject = {"reference": f"Patient/{self.pid}"}
        self.resources: list[Resource] = []
        self.serial = 0

    def rid(self, prefix: str) -> str:
        self.serial += 1
        return f"{self.pid}-{prefix}{self.serial}"

    def add(self, resource: Resource) -> Resource:
        self.resources.append(resource)
        return resource

    def medication(self, concept: Resource, *, kind: str, started: int, ended: int | None, how: str) -> Resource:
        """A MedicationStatement or MedicationRequest; ``how``: inline, contained or bundled."""
        rng = self.rng
        rid = self.rid("ms" if kind == "MedicationStatement" else "mr")
        r: Resource = {"resourceType": kind, "id": rid}
        if how == "contained":
            r["contained"] = [{"resourceType": "Medication", "id": "med", "code": concept}]
            r["medicationReference"] = {"reference": "#med"}
        elif how == "bundled":
            mid = self.rid("med")
            self.add({"resourceType": "Medication", "id": mid, "code": concept, "status": "active"})
            r["medicationReference"] = {"reference": f"Medication/{mid}"}
        else:
            r["medicationCodeableConcept"] = concept
        r["subject"] = self.subject
        if kind == "MedicationStatement":
            r["status"] = "active" if ended is None else rng.choice(["completed", "stopped"])
            period = {"start": day(started)}
            if ended is not None:
                period["end"] = day(ended)
            r["effectivePeriod"] = period
            r["dateAsserted"] = day(max(0, started - rng.randint(0, 30)))
        else:
            r["status"] = "active" if ended is None else rng.choice(["completed", "stopped"])
            r["intent"] = "order"
            r["authoredOn"] = moment(started, rng)
            r["requester"] = {"reference": "Practitioner/dr1", "display": "Dr Example"}
            r["dosageInstruction"] = [
                {
                    "text": "1 tablet by mouth twice daily",
                    "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
                }
            ]
        return self.add(r)

    def drug(self, group: str) -> None:
        rng = self.rng
        code, name, products = rng.choice(DRUGS[group])
        if products and rng.random() < 0.5:
            pcode, pname = rng.choice(products)
            concept = _cc(RXNORM, pcode, pname)
        else:
            concept = _cc(RXNORM, code, name, text=rng.random() < 0.5)
        started = rng.randint(5, 700)
        ended = None if rng.random() < 0.7 else max(0, started - rng.randint(10, 300))
        how = rng.choices(["inline", "contained", "bundled"], [0.8, 0.1, 0.1])[0]
        kind = rng.choice(["MedicationStatement", "MedicationRequest"])
        self.medication(concept, kind=kind, started=started, ended=ended, how=how)

    def kratom(self) -> None:
        rng = self.rng
        text = rng.choice(SEVEN_OH_TEXTS) if rng.random() < 0.15 else rng.choice(KRATOM_TEXTS)
        concept: Resource = {"text": text}
        if rng.random() < 0.2:
            concept = {"coding": [{"system": BOTANICALS, "code": "kratom", "display": "Kratom"}], "text": text}
        how = rng.choices(["inline", "contained"], [0.7, 0.3])[0]
        started = rng.randint(3, 120)
        st = self.medication(concept, kind="MedicationStatement", started=started, ended=None, how=how)
        if rng.random() < 0.35:  # a pharmacist verified the kratom statement
            self.add(
                {
                    "resourceType": "Provenance",
                    "id": self.rid("prov"),
                    "target": [{"reference": f"MedicationStatement/{st['id']}"}],
                    "recorded": moment(max(0, started - rng.randint(0, 3)), rng),
                    "agent": [
                        {
                            "type": _cc(
                                "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "verifier",
                                "Verifier",
                                text=False,
                            ),
                            "who": {"reference": "Practitioner/dr1"},
                        }
                    ],
                }
            )

    def condition(self, system: str, code: str, display: str, *, onset: int) -> None:
        cat = "problem-list-item" if self.rng.random() < 0.7 else "encounter-diagnosis"
        self.add(
            {
                "resourceType": "Condition",
                "id": self.rid("c"),
                "clinicalStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active", text=False
                ),
                "verificationStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed", text=False
                ),
                "category": [
                    _cc("http://terminology.hl7.org/CodeSystem/condition-category", cat, cat.title(), text=False)
                ],
                "code": _cc(system, code, display),
                "subject": self.subject,
                "onsetDateTime": day(onset),
                "recordedDate": day(max(0, onset - 2)),
            }
        )

    def observation(
        self, code: str, display: str, value: float, unit: str, category: str, days_ago: int, ucum: bool = True
    ) -> None:
        quantity: Resource = {"value": value, "unit": unit}
        if ucum:
            quantity |= {"system": UCUM, "code": unit}
        self.add(
            {
                "resourceType": "Observation",
                "id": self.rid("o"),
                "status": "final",
                "category": [
                    _cc(
                        "http://terminology.hl7.org/CodeSystem/observation-category",
                        category,
                        category.replace("-", " ").title(),
                        text=False,
                    )
                ],
                "code": _cc(LOINC, code, display),
                "subject": self.subject,
                "effectiveDateTime": moment(days_ago, self.rng),
                "issued": moment(days_ago, self.rng).replace("Z", ".000Z"),
                "valueQuantity": quantity,
            }
        )

    def build(self) -> list[Resource]:
        rng = self.rng
        self.add(
            {
                "resourceType": "Patient",
                "id": self.pid,
                "meta": {"tag": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"}]},
                "name": [{"family": f"Synthetic{rng.randint(1, 9999)}", "given": ["Test"]}],
                "gender": rng.choice(["female", "male"]),
                "birthDate": day(rng.randint(18 * 365, 85 * 365)),
                "address": [{"city": "Springfield", "state": "MA", "postalCode": "01103"}],
            }
        )
        # medications: chronic drugs for most, then the drugs the rules are about
        for _ in range(rng.randint(3, 6)):
            self.drug("chronic")
        shares = {"antidepressant": 0.25, "opioid": 0.15, "sedative": 0.12, "nti": 0.03, "naloxone": 0.03}
        for group, share in shares.items():
            if rng.random() < share:
                self.drug(group)
        kratom = rng.random() < 0.15
        if kratom:
            self.kratom()
        # conditions
        for system, code, display, share in CONDITIONS:
            if rng.random() < share:
                self.condition(system, code, display, onset=rng.randint(30, 3000))
        depressed = rng.random() < 0.15
        if depressed:
            system, code, display = rng.choice(DEPRESSION)
            self.condition(system, code, display, onset=rng.randint(10, 400))
        # observations: a PHQ-9 for some, vitals at 1-2 encounters, a few labs
        if depressed or rng.random() < 0.2:
            score = rng.randint(8, 22) if depressed else rng.randint(0, 12)
            self.observation(
                "44261-6",
                "PHQ-9 total score [Reported]",
                score,
                "{score}",
                "survey",
                rng.randint(5, 250),
                ucum=False,
            )
        for _ in range(rng.randint(2, 3)):
            when = rng.randint(10, 500)
            self.add(
                {
                    "resourceType": "Encounter",
                    "id": self.rid("e"),
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "type": [_cc(SNOMED, "185349003", "Encounter for check up")],
                    "subject": self.subject,
                    "period": {"start": moment(when, rng), "end": moment(when, rng)},
                }
            )
            for code, display, unit, low, high in rng.sample(VITALS, 5):
                self.observation(code, display, round(rng.uniform(low, high), 1), unit, "vital-signs", when)
        for code, display, unit, low, high in rng.sample(LABS, rng.randint(2, 4)):
            self.observation(code, display, round(rng.uniform(low, high), 1), unit, "laboratory", rng.randint(5, 400))
        # resources the rules do not read
        self.add(
            {
                "resourceType": "Immunization",
                "id": self.rid("i"),
                "status": "completed",
                "vaccineCode": _cc("http://hl7.org/fhir/sid/cvx", "140", "Influenza, seasonal, injectable"),
                "patient": self.subject,
                "occurrenceDateTime": moment(rng.randint(10, 400), rng),
            }
        )
        if rng.random() < 0.3:
            self.add(
                {
                    "resourceType": "AllergyIntolerance",
                    "id": self.rid("a"),
                    "clinicalStatus": _cc(
                        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "active",
                        "Active",
                        text=False,
                    ),
                    "code": _cc(SNOMED, "91936005", "Allergy to penicillin"),
                    "patient": self.subject,
                }
            )
        # a documented medication review for some, a care plan for a few
        if rng.random() < 0.25:
            self.add(
                {
                    "resourceType": "Procedure",
                    "id": self.rid("p"),
                    "status": "completed",
                    "code": _cc(SNOMED, "428191000124101", "Documentation of current medications"),
                    "subject": self.subject,
                    "performedDateTime": moment(rng.randint(0, 200), rng),
                    "performer": [{"actor": {"reference": "Practitioner/dr1"}}],
                }
            )
        if rng.random() < 0.2:
            self.add(
                {
                    "resourceType": "Procedure",
                    "id": self.rid("p"),
                    "status": "completed",
                    "code": _cc(SNOMED, "73761001", "Colonoscopy"),
                    "subject": self.subject,
                    "performedPeriod": {"start": moment(rng.randint(100, 900), rng)},
                }
            )
        if rng.random() < 0.1:
            self.add(
                {
                    "resourceType": "CarePlan",
                    "id": self.rid("cp"),
                    "status": "active",
                    "intent": "plan",
                    "subject": self.subject,
                    "title": "Diabetes self-management plan",
                }
            )
        return self.resources


def make_unique(value: Any, tag: str) -> None:
    """Append ``tag`` to every code display and text, so no two patients share a concept."""
    if isinstance(value, dict):
        for key in ("display", "text"):
            if isinstance(value.get(key), str):
                value[key] = f"{value[key]} {tag}"
        for item in value.values():
            make_unique(item, tag)
    elif isinstance(value, list):
        for item in value:
            make_unique(item, tag)


def bundle_text(resources: Sequence[Resource], rng: random.Random) -> str:
    """A collection Bundle with RESTful fullUrls."""
    practitioner: Resource = {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Example"}]}
    entries = [{"fullUrl": f"http://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    entries.append({"fullUrl": "http://example.org/fhir/Practitioner/dr1", "resource": practitioner})
    bundle = {"resourceType": "Bundle", "id": uuid(rng), "type": "collection", "entry": entries}
    return json.dumps(bundle, separators=(",", ":"), ensure_ascii=False)


def generate(count: int, seed: int, unique: bool = False) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        resources = PatientBuilder(rng, i).build()
        if unique:
            make_unique(resources, f"(#{i})")
        texts.append(bundle_text(resources, rng))
    return texts
