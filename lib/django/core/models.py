"""The app's models, reduced to what the caches read.

Every table carries tenant_id, client_id and bu_id (in the full app they
are foreign keys; the columns have these names).  The table names are the
ones the README's SQL examples use.
"""
from django.db import models


class TenantAwareModel(models.Model):
    tenant_id = models.IntegerField()
    client_id = models.IntegerField()
    bu_id = models.IntegerField()

    class Meta:
        abstract = True


class TenantQuerySet(models.QuerySet):
    def for_request(self, request):
        """Rows of the request's tenant, client and bu."""
        return self.filter(tenant_id=request.tenant_id,
                           client_id=request.client_id,
                           bu_id=request.bu_id)


class Asset(TenantAwareModel):
    WORKING, MAINTENANCE, STANDBY = "WORKING", "MAINTENANCE", "STANDBY"

    assetcode = models.CharField(max_length=50)
    assetname = models.CharField(max_length=250)
    runningstatus = models.CharField(
        max_length=20, default=WORKING,
        choices=[(WORKING, "Working"), (MAINTENANCE, "Maintenance"), (STANDBY, "Standby")])

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "activity_asset"
        indexes = [models.Index(fields=["tenant_id", "client_id", "bu_id"])]


class People(TenantAwareModel):
    peoplecode = models.CharField(max_length=50)
    peoplename = models.CharField(max_length=120)
    enable = models.BooleanField(default=True)
    assets = models.ManyToManyField(Asset, through="AssetAssignment", related_name="assignees")

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "people_people"
        indexes = [models.Index(fields=["tenant_id", "client_id", "bu_id"])]


class AssetAssignment(TenantAwareModel):
    """People.assets' through table: it has the tenant columns too."""
    people = models.ForeignKey(People, on_delete=models.CASCADE)
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "people_assetassignment"
        constraints = [models.UniqueConstraint(fields=["people", "asset"],
                                               name="assetassignment_people_asset_uniq")]


class PeopleEventlog(TenantAwareModel):
    people = models.ForeignKey(People, on_delete=models.CASCADE)
    peventtype = models.CharField(max_length=30)
    punchintime = models.DateTimeField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "attendance_peopleeventlog"
        indexes = [models.Index(fields=["tenant_id", "client_id", "bu_id"])]
