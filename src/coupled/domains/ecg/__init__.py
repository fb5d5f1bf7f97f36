"""Single-lead ECG rhythm classification (normal / AF / other), the third domain (issue 19; docs/ecg.md)."""
