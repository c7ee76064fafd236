"""The auditor-facing HTML report: one self-contained file rendered from results.json alone."""

from facesec.report.render import render_report

__all__ = ["render_report"]
