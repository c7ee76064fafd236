"""Defences: what a vendor puts between the attacker and the recognizer. An input defence transforms every
image the system sees (enrolment, calibration and probes alike) before the recognizer embeds it. Each one is
registered in `facesec.plugins.DEFENCES` (entry-point group `facesec.defences`) with its typed parameters
(`facesec.defence_params`), so listing and validating them imports no torch."""
