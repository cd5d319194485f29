"""Jobs that train the biomarker model and fit task experts on its vectors."""
