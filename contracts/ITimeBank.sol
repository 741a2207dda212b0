// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/**
 * @title ITimeBank
 * @notice Types, events and errors of the time-bank ledger (PROTOCOL.md sections 1, 3, 4, 8 and 9).
 *
 * Solidity reserves `minutes` as a time unit, so the structs name that field `minutes_`; the EIP-712
 * type strings, which are what signers hash, keep the protocol's name `minutes`.
 */
interface ITimeBank {
    // ----- Signed messages (PROTOCOL.md sections 3 and 4) -----

    /// @notice One service delivered, signed by the station's terminal.
    struct ServiceOrder {
        bytes32 orderId;
        uint32 district;
        bytes32 volunteer;
        bytes32 payer;
        bytes32 recipient;
        uint16 serviceType;
        uint64 startTime;
        uint64 endTime;
        uint32 minutes_;
        bytes32 detailsHash;
    }

    struct RegisterDistrict {
        uint32 district;
        address admin;
        uint64 nonce;
    }

    struct RegisterStation {
        address station;
        uint32 district;
        uint64 nonce;
    }

    struct RemoveStation {
        address station;
        uint64 nonce;
    }

    struct RegisterAccount {
        bytes32 account;
        uint32 district;
        uint8 kind;
        uint64 nonce;
    }

    struct SetAccountStatus {
        bytes32 account;
        uint8 status;
        uint16 reason;
        uint64 nonce;
    }

    struct Grant {
        bytes32 account;
        uint32 minutes_;
        uint16 reason;
        uint64 nonce;
    }

    /// @notice Names the order by its id and its EIP-712 digest (v1.1), so no other order reusing the id is reversed.
    struct RevokeOrder {
        bytes32 orderId;
        bytes32 digest;
        uint16 reason;
        uint64 nonce;
    }

    struct RegisterAuditor {
        address auditor;
        uint32 district;
        uint64 nonce;
    }

    /// @notice The payer's consent that `beneficiary` may be served on, or given, the payer's hours (v1.1).
    struct LinkAccounts {
        bytes32 payer;
        bytes32 beneficiary;
        bool linked;
        uint64 nonce;
    }

    /// @notice What `verifyOrder` found, check by check (PROTOCOL.md section 7).
    struct OrderVerification {
        bytes32 digest;
        address signer;
        bool signedByStation;
        bool included;
        bool stationActive;
        bool revoked;
        bool valid;
    }

    // ----- Events -----

    /// @notice A district was created, or its administrator replaced (`previousAdmin` is zero on creation).
    event DistrictRegistered(uint32 indexed district, address indexed previousAdmin, address indexed admin);
    event StationRegistered(address indexed station, uint32 indexed district, uint64 activeFromBlock);
    event StationRemoved(address indexed station, uint32 indexed district, uint64 activeUntilBlock);
    /// @notice `index` is the account's index in canonical deltas (PROTOCOL.md section 9), given from 1.
    event AccountRegistered(bytes32 indexed account, uint32 indexed district, uint8 kind, uint32 index);
    event AccountStatusChanged(bytes32 indexed account, uint8 previousStatus, uint8 status, uint16 reason);
    event Granted(bytes32 indexed account, uint32 minutes_, uint16 reason, int64 balanceMinutes);
    event AuditorRegistered(address indexed auditor, uint32 indexed previousDistrict, uint32 indexed district);
    event NonceUsed(address indexed signer, uint64 nonce);
    /// @notice A batch was anchored; its per-account amounts are in the calldata of the same transaction.
    event BatchAnchored(uint64 indexed batchId, bytes32 root, uint32 count);
    /// @notice An order's movement of minutes was reversed: by its administrator's `RevokeOrder` (the command's
    /// reason), or by a challenge (reason 1000 + the fault's reason: 1001, 1002 or 1004).
    event OrderRevoked(bytes32 indexed orderId, uint64 indexed batchId, uint16 reason);
    /// @notice A payer linked (or unlinked) a family member's account (PROTOCOL.md section 4, v1.1).
    event AccountsLinked(bytes32 indexed payer, bytes32 indexed beneficiary, bool linked);
    /**
     * @notice A challenge proved a fault of a batch (PROTOCOL.md section 9): reason 1 a signature that does not
     * recover to its station, 2 a station not registered for the order's district or not active at the batch's
     * block, 3 amounts that differ from the canonical deltas of the valid orders (`orderId` zero), 4 one order
     * id anchored twice (`batchId` the later batch).
     */
    event BatchChallenged(uint64 indexed batchId, address indexed relayer, uint8 reason, bytes32 orderId);

    // ----- Errors -----

    error TimeBankUnauthorized(address signer, uint32 district);
    error TimeBankNonceUsed(address signer, uint64 nonce);
    error TimeBankZeroAddress();
    error TimeBankInvalidDistrict(uint32 district);
    error TimeBankUnknownDistrict(uint32 district);
    error TimeBankAdminInUse(address admin, uint32 district);
    error TimeBankStationExists(address station, uint32 district);
    error TimeBankUnknownStation(address station);
    error TimeBankStationRemoved(address station, uint64 activeUntilBlock);
    error TimeBankAccountExists(bytes32 account);
    error TimeBankUnknownAccount(bytes32 account);
    error TimeBankInvalidKind(uint8 kind);
    error TimeBankInvalidStatus(uint8 status);
    error TimeBankAccountCancelled(bytes32 account);
    error TimeBankAccountNotActive(bytes32 account, uint8 status);
    error TimeBankInsufficientBalance(bytes32 account, int64 availableMinutes, uint64 debitMinutes);
    error TimeBankZeroMinutes();
    error TimeBankEmptyBatch();
    error TimeBankMalformedDeltas(uint256 length);
    error TimeBankRootAlreadyAnchored(bytes32 root, uint64 batchId);
    error TimeBankUnknownBatch(uint64 batchId);
    error TimeBankInvalidProof(uint64 batchId, bytes32 leaf);
    error TimeBankOrderMismatch(bytes32 commandOrderId, bytes32 orderId);
    error TimeBankOrderAlreadyRevoked(bytes32 orderId);
    /// @notice The city administrator cannot also be a district's administrator.
    error TimeBankCityAdminAsDistrictAdmin(address admin);
    /// @notice `RevokeOrder.digest` is not the digest of the order given with it.
    error TimeBankDigestMismatch(bytes32 commandDigest, bytes32 orderDigest);
    /// @notice `deltas` entry `entry` (from 0) is not canonical: index 0, not above the previous one, or all zero.
    error TimeBankNonCanonicalDeltas(uint256 entry);
    /// @notice No account holds this index.
    error TimeBankUnknownAccountIndex(uint32 index);
    /// @notice `keccak256(abi.encodePacked(relayer, deltas))` is not the batch's commitment.
    error TimeBankCommitmentMismatch(uint64 batchId, address relayer);
    /// @notice A challenge gave `given` orders (or stations, or signatures) for a batch of `count`.
    error TimeBankLeafCountMismatch(uint64 batchId, uint32 count, uint256 given);
    /// @notice Leaf `position` is below the one before it: leaves go in ascending order of leaf hash.
    error TimeBankLeavesNotSorted(uint256 position);
    /// @notice The standard Merkle tree of the challenge's leaves has `computed` as root, not the batch's `root`.
    error TimeBankRootMismatch(uint64 batchId, bytes32 root, bytes32 computed);
    error TimeBankBatchAlreadyChallenged(uint64 batchId);
    /// @notice The challenged batch has no fault: every signature, station and amount is right.
    error TimeBankNoFault(uint64 batchId);
    /// @notice The two orders of a duplicate challenge are not in the required batches or positions.
    error TimeBankDuplicateNotProven(uint64 batchA, uint64 batchB);
    /// @notice Every copy the duplicate challenge proves was reversed already.
    error TimeBankNothingToReverse(bytes32 orderId);
}
