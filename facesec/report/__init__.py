"""The auditor-facing HTML report: one self-contained file rendered from results.json alone
(`facesec.report.render.render_report`); `fields` alone is light enough for a family's torch-free module."""
