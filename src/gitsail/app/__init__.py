"""Applications: the App model, the Argo CD adapter, and the pipeline that delivers them."""
