"""Entry mappers: one method per kind of WS 363 data element (``vocab.Element.kind``).

Mixed into :class:`to_fhir.DocumentReader`, which supplies the document
context (``self.patient``, ``self.encounter``, ``self.clinical_time``), value
reading (``self.value``, ``self.concept``) and ``self.new`` for deterministic
resources. Each mapper cites the data element it reads.
"""

from __future__ import annotations

import re
from typing import Any

from fhirhub_plugins.cda import vocab
from fhirhub_plugins.cda.cdatypes import number
from fhirhub_plugins.cda.parse import NS
from hub.plugin_api import codesystems as cs

_ICD10 = re.compile(vocab.ICD10_SHAPE)
_ICD9 = re.compile(vocab.ICD9CM3_SHAPE)
_NONE_TEXTS = {"无", "否", "没有", "不详"}  # history items answered "none"
OBS_CATEGORY_DISPLAY = {
    "vital-signs": "Vital Signs",
    "laboratory": "Laboratory",
    "social-history": "Social History",
    "exam": "Exam",
    "survey": "Survey",
}


def ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def coding(system: str | None, code: str | None, display: str | None = None) -> dict:
    out: dict[str, Any] = {}
    if system:
        out["system"] = system
    if code:
        out["code"] = code
    if display:
        out["display"] = display
    return out


class EntryMappers:
    """Observation entries -> resources, by data-element kind (a mixin of DocumentReader)."""

    def map_observation(self, obs, element: vocab.Element, loc: str) -> None:
        value = self.value(self.find(obs, "v3:value"), element, loc)
        if value is None:
            self.context.info(f"{element.de} {element.name} has no value", loc)
            return
        category = element.kind.split(":")[1]
        codings = []
        loinc = self.context.code_map("cda-data-element-loinc").lookup(element.de)
        if loinc:
            codings.append(coding(vocab.LOINC, loinc.code, loinc.display))
        codings.append(self.de_coding(element))
        if element.item:
            # read by the five-colour rules (mappings/five-colour/rules.yaml health_record_items)
            codings.append(coding(cs.HEALTH_RECORD_ITEM, element.item))
        self.new(
            "Observation",
            self.next_key(element.de),
            status="final",
            category=[
                {"coding": [coding(vocab.OBS_CATEGORY, category, OBS_CATEGORY_DISPLAY[category])]}
            ],
            code={"coding": codings, "text": element.name},
            subject=ref(self.patient),
            encounter=ref(self.encounter) if self.encounter else None,
            effectiveDateTime=self.effective(obs),
            **{value[0]: value[1]},
        )

    def bp_component(self, obs, element: vocab.Element, loc: str, group: dict | None) -> None:
        """Systolic/diastolic pairs: one 85354-9 panel per organizer (left and right arm)."""
        # DE04.10.174.00 收缩压 / DE04.10.176.00 舒张压 (+ targetSiteCode) -> 85354-9 components
        value = self.value(self.find(obs, "v3:value"), element, loc)
        if value is None:
            return
        if group is None or "bp" not in group:
            resource = self.new(
                "Observation",
                self.next_key("bp"),
                status="final",
                category=[{"coding": [coding(vocab.OBS_CATEGORY, "vital-signs", "Vital Signs")]}],
                code={
                    "coding": [
                        coding(
                            vocab.LOINC,
                            "85354-9",
                            "Blood pressure panel with all children optional",
                        )
                    ],
                    "text": "血压",
                },
                subject=ref(self.patient),
                encounter=ref(self.encounter) if self.encounter else None,
                effectiveDateTime=self.effective(obs),
                component=[],
            )
            resource.setdefault("component", [])
            if group is None:
                group = {}
                self._loose_bp = group
            group["bp"] = resource
        resource = group["bp"]
        site_el = self.find(obs, "v3:targetSiteCode")
        if site_el is not None and site_el.get("code") and "bodySite" not in resource:
            resource["bodySite"] = {
                "coding": [
                    coding(
                        "http://snomed.info/sct", site_el.get("code"), site_el.get("displayName")
                    )
                ]
            }
        loinc = self.context.code_map("cda-data-element-loinc").lookup(element.de)
        resource["component"].append(
            {
                "code": {
                    "coding": [
                        coding(vocab.LOINC, loinc.code, loinc.display),
                        self.de_coding(element),
                    ]
                },
                value[0]: value[1],
            }
        )
        if len(resource["component"]) >= 2 and group is self._loose_bp:
            del group["bp"]  # loose pairs outside organizers: start a new panel after each pair

    def read_organizer(self, organizer, loc: str) -> None:
        # organizer classCode=CLUSTER with subject/relatedSubject: a family member's history
        if self.find(organizer, "v3:subject/v3:relatedSubject") is not None:
            with self.counted_entry():
                self.map_family(organizer, loc)
            return
        group: dict = {}
        for k, comp in enumerate(organizer.findall("v3:component", NS), 1):
            for child in comp:
                if not isinstance(child.tag, str):
                    continue
                local = child.tag.split("}")[-1]
                if local == "observation":
                    self.read_observation(child, f"{loc}/component[{k}]/observation", group)
                else:
                    self.refuse(
                        f"{loc}/component[{k}]/{local}", f"{local} components are not mapped"
                    )

    # -- resource kinds --------------------------------------------------------
    def map_coverage(self, obs, element, loc) -> None:
        # DE07.00.007.00 医疗费用支付方式代码 -> Coverage.type
        concept = self.concept_value(obs, element, loc)
        if concept is None:
            return
        code = concept["coding"][0].get("code")
        self_pay = code in ("7", "07")
        self.new(
            "Coverage",
            self.next_key(element.de),
            status="active",
            type=concept,
            beneficiary=ref(self.patient),
            payor=[ref(self.patient)]
            if self_pay
            else [{"display": concept["coding"][0].get("display") or code}],
        )

    def concept_value(self, obs, element, loc) -> dict | None:
        value_el = self.find(obs, "v3:value")
        if value_el is None:
            return None
        concept = self.concept(value_el, element, f"{loc}/value")
        if concept is None:
            self.context.info(f"{element.de} {element.name} has no value", loc)
        return concept

    def map_allergy(self, obs, element, loc) -> None:
        # DE05.01.022.00 药物过敏源 -> AllergyIntolerance.code
        concept = self.concept_value(obs, element, loc)
        if concept is None:
            return
        self.new(
            "AllergyIntolerance",
            self.next_key(element.de),
            clinicalStatus={
                "coding": [
                    coding(
                        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "active",
                    )
                ]
            },
            verificationStatus={
                "coding": [
                    coding(
                        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        "confirmed",
                    )
                ]
            },
            category=["medication"],
            code=concept,
            patient=ref(self.patient),
            recordedDate=self.effective(obs),
        )

    def _is_none(self, concept: dict, element) -> bool:
        none_code = vocab.NONE_CODES.get(element.domain or "")
        return none_code is not None and concept["coding"][0].get("code") == none_code

    def map_condition_past(self, obs, element, loc) -> None:
        # DE02.10.021.00 既往患病种类代码 (+ effectiveTime 确诊日期) -> Condition
        concept = self.concept_value(obs, element, loc)
        if concept is None:
            return
        if self._is_none(concept, element):
            self.context.info(f"{element.name}: 无 (none recorded)", loc)
            return
        self.condition(obs, element, concept, "problem-list-item")

    def condition(self, obs, element, concept, category: str, onset: bool = True) -> dict:
        eff = self.find(obs, "v3:effectiveTime")
        when = None
        if eff is not None:
            when = self.ts(eff) or self.ts(self.find(eff, "v3:low"))
        return self.new(
            "Condition",
            self.next_key(element.de),
            category=[
                {"coding": [coding(vocab.CONDITION_CATEGORY, category), self.de_coding(element)]}
            ],
            code=concept,
            subject=ref(self.patient),
            encounter=ref(self.encounter)
            if self.encounter and category == "encounter-diagnosis"
            else None,
            onsetDateTime=when if onset else None,
            recordedDate=self.clinical_time if category == "encounter-diagnosis" else None,
        )

    def text_value(self, obs, element, loc) -> str | None:
        value = self.value(self.find(obs, "v3:value"), element, loc)
        if value is None or value[0] != "valueString":
            self.context.info(f"{element.de} {element.name} has no value", loc)
            return None
        if value[1] in _NONE_TEXTS and element.kind != "encounter:reason":
            self.context.info(f"{element.name}: {value[1]} (none recorded)", loc)
            return None
        return value[1]

    def map_condition_trauma(self, obs, element, loc) -> None:
        # DE02.10.068.00 外伤名称 (+ effectiveTime 外伤发生时间) -> Condition
        text = self.text_value(obs, element, loc)
        if text:
            self.condition(obs, element, {"text": text}, "problem-list-item")

    def map_condition_hereditary(self, obs, element, loc) -> None:
        # DE02.10.026.00 遗传性疾病史 -> Condition
        text = self.text_value(obs, element, loc)
        if text:
            self.condition(obs, element, {"text": text}, "problem-list-item")

    def map_condition_diagnosis(self, obs, element, loc) -> None:
        # DE05.01.024.00 诊断代码 (ICD-10, 2.16.156.10011.2.3.3.11) -> Condition
        value_el = self.find(obs, "v3:value")
        if value_el is None or not value_el.get("code"):
            self.context.info(f"{element.de} {element.name} has no value", loc)
            return
        code = value_el.get("code").strip()
        system = value_el.get("codeSystem") or vocab.OID_ICD10
        if system.startswith(vocab.OID_ICD10 + "."):
            # Sub-arcs (.11.1/.2/.3/.5: diagnosis, cause of death...) hold the same ICD-10
            # codes; one system lets searches and the five-colour rules find them all.
            system = vocab.OID_ICD10
        if system == vocab.OID_ICD10 and not _ICD10.match(code):
            self.context.warn(
                f"diagnosis code {code!r} does not have an ICD-10 shape",
                f"{loc}/value",
                code="code-invalid",
            )
        concept = {"coding": [coding(vocab.urn(system), code, value_el.get("displayName"))]}
        self.condition(obs, element, concept, "encounter-diagnosis", onset=False)

    def procedure_resource(self, obs, element, text: str, position_kind: str) -> None:
        self.new(
            "Procedure",
            self.next_key(position_kind),
            status="completed",
            category={"coding": [self.de_coding(element)]},
            code={"text": text},
            subject=ref(self.patient),
            performedDateTime=self.effective_own(obs),
        )

    def effective_own(self, obs) -> str | None:
        eff = self.find(obs, "v3:effectiveTime")
        if eff is None:
            return None
        return self.ts(eff) or self.ts(self.find(eff, "v3:low"))

    def map_procedure_surgery(self, obs, element, loc) -> None:
        # DE02.10.061.00 手术史 (+ effectiveTime 手术日期) -> Procedure
        text = self.text_value(obs, element, loc)
        if text:
            self.procedure_resource(obs, element, text, element.de)

    def map_procedure_transfusion(self, obs, element, loc) -> None:
        # DE06.00.107.00 输血原因 (+ effectiveTime 输血日期) -> Procedure
        text = self.text_value(obs, element, loc)
        if text:
            self.procedure_resource(obs, element, text, element.de)

    def map_family(self, organizer, loc: str) -> None:
        # organizer: subject/relatedSubject/code (GB/T 4761) + DE02.10.095.00 -> FamilyMemberHistory
        rel = self.find(organizer, "v3:subject/v3:relatedSubject/v3:code")
        if rel is None or not rel.get("code"):
            self.refuse(loc, "family history without a relationship code was not mapped")
            return
        relationship = {
            "coding": [
                coding(vocab.urn(vocab.OID_RELATIONSHIP), rel.get("code"), rel.get("displayName"))
            ]
        }
        translated = self.context.translate(
            "cda-relationship", rel.get("code"), f"{loc}/subject/relatedSubject/code"
        )
        if translated:
            relationship["coding"].append(
                coding(translated.system, translated.code, translated.display)
            )
        conditions = []
        for k, comp in enumerate(organizer.findall("v3:component", NS), 1):
            obs = self.find(comp, "v3:observation")
            where = f"{loc}/component[{k}]/observation"
            if obs is None:
                self.context.unused(f"{loc}/component[{k}]")
                continue
            de, element = self.data_element(self.find(obs, "v3:code"), where)
            if de is None:
                continue
            if element is None or element.kind != "family":
                self.context.unused(where, f"{de} inside a family-history organizer was not mapped")
                continue
            concept = self.concept_value(obs, element, where)
            if concept is None:
                continue
            if self._is_none(concept, element):
                self.context.info(f"{element.name}: 无 (none recorded)", where)
                continue
            conditions.append({"code": concept})
        if not conditions:
            return
        self.new(
            "FamilyMemberHistory",
            self.next_key("family"),
            status="completed",
            patient=ref(self.patient),
            relationship=relationship,
            condition=conditions,
        )

    def map_encounter_followup(self, obs, element, loc) -> None:
        # DE06.00.108.00 随访方式 (+ effectiveTime 随访日期) -> Encounter.class/type[1]/period
        concept = self.concept_value(obs, element, loc)
        if concept is None or self.encounter is None:
            return
        code = concept["coding"][0].get("code")
        cls = self.context.translate("cda-followup-encounter-class", code, f"{loc}/value")
        if cls:
            self.encounter["class"] = coding(cls.system, cls.code, cls.display)
        # The programme stays the first type; the visit mode is a second one (profile
        # key-population-followup: it agrees with class).
        self.encounter["type"] = [self.encounter_type_concept(), {"coding": concept["coding"]}]
        when = self.effective_own(obs)
        if when:
            self.encounter["period"] = {"start": when}

    def map_risk_grade(self, obs, element, loc) -> None:
        # 危险性分级 0-5 (severe-mental-disorder follow-up) -> Observation valueInteger. Sent as
        # INT or as a CD of its code table (CV05.10.013: codes 0 ... 5); anything else is refused.
        value_el = self.find(obs, "v3:value")
        if value_el is None or value_el.get("nullFlavor"):
            self.context.info(f"{element.de} {element.name} has no value", loc)
            return
        raw = (value_el.get("value") or value_el.get("code") or "").strip()
        if not (raw.isdigit() and int(raw) in vocab.SMD_RISK_GRADES):
            self.refuse(f"{loc}/value", f"{element.name} {raw!r} is not a grade from 0 to 5")
            return
        self.new(
            "Observation",
            self.next_key(element.de),
            status="final",
            category=[
                {"coding": [coding(vocab.OBS_CATEGORY, "survey", OBS_CATEGORY_DISPLAY["survey"])]}
            ],
            code={"coding": [self.de_coding(element)], "text": element.name},
            subject=ref(self.patient),
            encounter=ref(self.encounter) if self.encounter else None,
            effectiveDateTime=self.effective(obs),
            valueInteger=int(raw),
        )

    def map_encounter_reason(self, obs, element, loc) -> None:
        # DE04.01.119.00 主诉 -> Encounter.reasonCode
        text = self.text_value(obs, element, loc)
        if text and self.encounter is not None:
            self.encounter["reasonCode"] = [{"text": text}]
        elif text:
            self.refuse(loc, "chief complaint without an encounter was not mapped")

    def map_appointment(self, obs, element, loc) -> None:
        # DE06.00.109.00 下次随访日期 -> Appointment (proposed)
        value = self.value(self.find(obs, "v3:value"), element, loc)
        if value is None:
            return
        day = value[1][:10]
        self.new(
            "Appointment",
            self.next_key(element.de),
            status="proposed",
            serviceType=[{"text": self.doc_type.encounter_type}],
            description=element.name,
            requestedPeriod=[{"start": day, "end": day}],
            participant=[{"actor": ref(self.patient), "status": "needs-action"}],
        )

    def read_medication(self, sa, loc: str) -> None:
        # substanceAdministration: manufacturedLabeledDrug name/code, routeCode, doseQuantity, DE06.00.133.00 频率 -> MedicationStatement
        drug = self.find(sa, "v3:consumable/v3:manufacturedProduct/v3:manufacturedLabeledDrug")
        if drug is None:
            drug = self.find(sa, "v3:consumable/v3:manufacturedProduct/v3:manufacturedMaterial")
        name = self.text(drug, "v3:name") if drug is not None else None
        code = self.find(drug, "v3:code") if drug is not None else None
        medication: dict[str, Any] = {}
        if code is not None and code.get("code"):
            medication["coding"] = [
                coding(
                    vocab.urn(code.get("codeSystem")) if code.get("codeSystem") else None,
                    code.get("code"),
                    code.get("displayName"),
                )
            ]
        if name:
            medication["text"] = name
        if not medication:
            self.refuse(loc, "medication without a drug name or code was not mapped")
            return
        dosage: dict[str, Any] = {}
        route = self.find(sa, "v3:routeCode")
        if route is not None and route.get("code"):
            dosage["route"] = {
                "coding": [
                    coding(
                        vocab.urn(route.get("codeSystem") or vocab.OID_ROUTE),
                        route.get("code"),
                        route.get("displayName"),
                    )
                ]
            }
        dose = self.find(sa, "v3:doseQuantity")
        if dose is not None and number(dose.get("value")) is not None:
            quantity = {"value": number(dose.get("value"))}
            if dose.get("unit"):
                quantity["unit"] = dose.get("unit")
            dosage["doseAndRate"] = [{"doseQuantity": quantity}]
        for k, rel in enumerate(sa.findall("v3:entryRelationship", NS), 1):
            obs = self.find(rel, "v3:observation")
            code_el = self.find(obs, "v3:code") if obs is not None else None
            # DE06.00.133.00 药物使用频率
            if code_el is not None and code_el.get("code") == "DE06.00.133.00":
                dosage["text"] = self.text(obs, "v3:value")
            else:
                self.context.unused(f"{loc}/entryRelationship[{k}]")
        self.new(
            "MedicationStatement",
            self.next_key("medication"),
            status="active",
            medicationCodeableConcept=medication,
            subject=ref(self.patient),
            context=ref(self.encounter) if self.encounter else None,
            effectiveDateTime=self.effective_own(sa) or self.clinical_time,
            dosage=[{k: v for k, v in dosage.items() if v}] if dosage else None,
        )

    def read_procedure(self, proc, loc: str) -> None:
        # procedure/code (ICD-9-CM-3, 2.16.156.10011.2.3.3.12) + effectiveTime -> Procedure
        code = self.find(proc, "v3:code")
        if code is None or not code.get("code"):
            self.refuse(loc, "procedure without a code was not mapped")
            return
        system = code.get("codeSystem") or vocab.OID_ICD9CM3
        if system == vocab.OID_ICD9CM3 and not _ICD9.match(code.get("code")):
            self.context.warn(
                f"procedure code {code.get('code')!r} does not have an ICD-9-CM-3 shape",
                f"{loc}/code",
                code="code-invalid",
            )
        self.new(
            "Procedure",
            self.next_key("procedure"),
            status="completed",
            code={"coding": [coding(vocab.urn(system), code.get("code"), code.get("displayName"))]},
            subject=ref(self.patient),
            encounter=ref(self.encounter) if self.encounter else None,
            performedDateTime=self.effective_own(proc),
        )


# vocab.Element.kind -> the DocumentReader method that maps an observation of that kind
KIND_HANDLERS = {
    "coverage": EntryMappers.map_coverage,
    "allergy": EntryMappers.map_allergy,
    "condition:past": EntryMappers.map_condition_past,
    "condition:trauma": EntryMappers.map_condition_trauma,
    "condition:hereditary": EntryMappers.map_condition_hereditary,
    "condition:diagnosis": EntryMappers.map_condition_diagnosis,
    "procedure:surgery": EntryMappers.map_procedure_surgery,
    "procedure:transfusion": EntryMappers.map_procedure_transfusion,
    "encounter:followup": EntryMappers.map_encounter_followup,
    "encounter:reason": EntryMappers.map_encounter_reason,
    "appointment": EntryMappers.map_appointment,
    "risk-grade": EntryMappers.map_risk_grade,
}
