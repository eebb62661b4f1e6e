"""Bounces and complaints (SPEC 13): reading DSNs, ARF reports and the non-standard
bounces of common mail servers (`parse`), and the intakes that feed them to
`campaigns.services.mail_event_record`."""
