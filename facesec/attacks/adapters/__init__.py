"""Run torchattacks' and ART's attacks through facesec's objectives, via stateless logits heads."""
