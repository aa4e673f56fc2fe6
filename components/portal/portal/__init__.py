"""The portal: the government service catalog (CPSV-AP), directory of bodies, search and citizen feedback."""
