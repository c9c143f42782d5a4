"""StarPay's recorded prompts: the catalog, speech composition, rendering and installing."""
