// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/**
 * @title ITimeBank
 * @notice Types, events and errors of the time-bank ledger (PROTOCOL.md sections 1, 3, 4 and 8).
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

    struct RevokeOrder {
        bytes32 orderId;
        uint16 reason;
        uint64 nonce;
    }

    struct RegisterAuditor {
        address auditor;
        uint32 district;
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
    event AccountRegistered(bytes32 indexed account, uint32 indexed district, uint8 kind);
    event AccountStatusChanged(bytes32 indexed account, uint8 previousStatus, uint8 status, uint16 reason);
    event Granted(bytes32 indexed account, uint32 minutes_, uint16 reason, int64 balanceMinutes);
    event AuditorRegistered(address indexed auditor, uint32 indexed previousDistrict, uint32 indexed district);
    event NonceUsed(address indexed signer, uint64 nonce);
    /// @notice A batch was anchored; its per-account amounts are in the calldata of the same transaction.
    event BatchAnchored(uint64 indexed batchId, bytes32 root, uint32 count);
    event OrderRevoked(bytes32 indexed orderId, uint64 indexed batchId, uint16 reason);

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
}
