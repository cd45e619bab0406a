"""Evidence that a picture can be trusted: sanity (randomisation) checks, faithfulness (pointing, deletion/insertion), method ranking and calibration."""
